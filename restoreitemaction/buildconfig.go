package restoreitemaction

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// BuildConfigAction points a BuildConfig's images (output, strategy base image, source images)
// at the target: DockerImage references into the source's internal registry move to the
// target's, ImageStreamTag references follow the namespace mapping, and generated pull/push
// secrets are swapped for the target's — or dropped, since builds then use the builder service
// account's own secrets.
type BuildConfigAction struct {
	log      logrus.FieldLogger
	registry func() string
	secrets  *pullSecrets
}

var _ riav1.RestoreItemAction = (*BuildConfigAction)(nil)

func NewBuildConfigAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *BuildConfigAction {
	return &BuildConfigAction{log: log, registry: targetRegistry(log, clients, cfg), secrets: newPullSecrets(clients.Kube)}
}

func (a *BuildConfigAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"buildconfigs.build.openshift.io"}}, nil
}

// buildStrategies are the strategy fields that may carry "from" and "pullSecret".
var buildStrategies = []string{"sourceStrategy", "dockerStrategy", "customStrategy"}

func (a *BuildConfigAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	nsMap := namespaceMapping(input)
	rw := imageRewrite{from: from.GetAnnotations()[keys.SourceRegistry], nsMap: nsMap}
	if rw.from != "" {
		rw.to = a.registry()
	}
	targetNS := mapNamespace(nsMap, u.GetNamespace())
	log := a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()})
	ctx := context.Background()
	spec, found, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil || !found {
		return velero.NewRestoreItemActionExecuteOutput(u), err
	}
	backedUpSpec, _, _ := unstructured.NestedMap(from.Object, "spec")
	was := map[string]map[string]any{}
	for _, p := range buildConfigReferences(backedUpSpec) {
		was[p.key] = p.ref
	}
	for _, p := range buildConfigReferences(spec) {
		mapObjectReference(p.ref, was[p.key], rw, nsMap, log)
		if p.secret == nil {
			continue
		}
		if err := a.swapSecret(ctx, log, p.secret, p.secretKey, targetNS); err != nil {
			return nil, fmt.Errorf("BuildConfig %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
	}
	if err := unstructured.SetNestedMap(u.Object, spec, "spec"); err != nil {
		return nil, err
	}
	dropOVPRegistryStamp(u, rw)
	dropSourceStamps(u)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}

// buildReference is a place in a BuildConfig's spec holding an image reference ("from"/"to") and,
// beside it, maybe a secret reference.
type buildReference struct {
	key       string // names the place, the same in the backed-up spec
	ref       map[string]any
	secret    map[string]any // holds the secret reference at secretKey (nil: none)
	secretKey string
}

func buildConfigReferences(spec map[string]any) []buildReference {
	var refs []buildReference
	if output, ok := spec["output"].(map[string]any); ok {
		to, _ := output["to"].(map[string]any)
		refs = append(refs, buildReference{"output", to, output, "pushSecret"})
	}
	if strategy, ok := spec["strategy"].(map[string]any); ok {
		for _, s := range buildStrategies {
			if st, ok := strategy[s].(map[string]any); ok {
				f, _ := st["from"].(map[string]any)
				refs = append(refs, buildReference{s, f, st, "pullSecret"})
			}
		}
	}
	if source, ok := spec["source"].(map[string]any); ok {
		images, _ := source["images"].([]any)
		for i, img := range images {
			if im, ok := img.(map[string]any); ok {
				f, _ := im["from"].(map[string]any)
				refs = append(refs, buildReference{fmt.Sprintf("source.images[%d]", i), f, im, "pullSecret"})
			}
		}
	}
	if triggers, ok := spec["triggers"].([]any); ok {
		for i, t := range triggers {
			tm, _ := t.(map[string]any)
			ic, _ := tm["imageChange"].(map[string]any)
			if f, ok := ic["from"].(map[string]any); ok {
				refs = append(refs, buildReference{key: fmt.Sprintf("triggers[%d]", i), ref: f})
			}
		}
	}
	return refs
}

// mapObjectReference rewrites an ObjectReference of kind DockerImage (its name is an image
// reference) or ImageStreamTag/ImageStreamImage (its namespace follows the mapping), unless an
// action before ferry's changed it from was, the same reference in the backup (see once).
func mapObjectReference(ref, was map[string]any, rw imageRewrite, nsMap map[string]string, log logrus.FieldLogger) {
	if ref == nil {
		return
	}
	switch ref["kind"] {
	case "DockerImage":
		if name, ok := ref["name"].(string); ok {
			wasName, _ := was["name"].(string)
			if out, changed := rw.once(log, name, wasName); changed {
				ref["name"] = out
			}
		}
	case "ImageStreamTag", "ImageStreamImage":
		if ns, ok := ref["namespace"].(string); ok && ns != "" {
			wasNS, _ := was["namespace"].(string)
			ref["namespace"] = once(ns, wasNS, func(ns string) string { return mapNamespace(nsMap, ns) })
		}
	}
}

// swapSecret replaces a generated secret reference in holder[key] by the target's, or drops it.
func (a *BuildConfigAction) swapSecret(ctx context.Context, log logrus.FieldLogger, holder map[string]any, key, targetNS string) error {
	ref, _ := holder[key].(map[string]any)
	name, _ := ref["name"].(string)
	m := generatedPullSecret.FindStringSubmatch(name)
	if m == nil {
		return nil
	}
	target, err := a.secrets.lookup(ctx, targetNS, m[1], false)
	if err != nil {
		return err
	}
	if target == "" {
		delete(holder, key)
		log.Infof("dropped %s %s: builds use the %s service account's own secrets", key, name, m[1])
		return nil
	}
	ref["name"] = target
	log.Infof("%s %s replaced by %s", key, name, target)
	return nil
}
