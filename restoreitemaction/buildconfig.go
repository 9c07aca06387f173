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

	// Each place holding an image reference ("from"/"to") and, beside it, a secret reference.
	type place struct {
		ref    map[string]any
		secret map[string]any
		key    string // the secret's field name in secret
	}
	var places []place
	if output, ok := spec["output"].(map[string]any); ok {
		to, _ := output["to"].(map[string]any)
		places = append(places, place{to, output, "pushSecret"})
	}
	if strategy, ok := spec["strategy"].(map[string]any); ok {
		for _, s := range buildStrategies {
			if st, ok := strategy[s].(map[string]any); ok {
				f, _ := st["from"].(map[string]any)
				places = append(places, place{f, st, "pullSecret"})
			}
		}
	}
	if source, ok := spec["source"].(map[string]any); ok {
		images, _ := source["images"].([]any)
		for _, img := range images {
			if im, ok := img.(map[string]any); ok {
				f, _ := im["from"].(map[string]any)
				places = append(places, place{f, im, "pullSecret"})
			}
		}
	}
	for _, p := range places {
		mapObjectReference(p.ref, rw, nsMap)
		if err := a.swapSecret(ctx, log, p.secret, p.key, targetNS); err != nil {
			return nil, fmt.Errorf("BuildConfig %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
	}
	if triggers, ok := spec["triggers"].([]any); ok {
		for _, t := range triggers {
			ic, _ := t.(map[string]any)["imageChange"].(map[string]any)
			if f, ok := ic["from"].(map[string]any); ok {
				mapObjectReference(f, rw, nsMap)
			}
		}
	}
	if err := unstructured.SetNestedMap(u.Object, spec, "spec"); err != nil {
		return nil, err
	}
	dropSourceStamps(u)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}

// mapObjectReference rewrites an ObjectReference of kind DockerImage (its name is an image
// reference) or ImageStreamTag/ImageStreamImage (its namespace follows the mapping).
func mapObjectReference(ref map[string]any, rw imageRewrite, nsMap map[string]string) {
	if ref == nil {
		return
	}
	switch ref["kind"] {
	case "DockerImage":
		if name, ok := ref["name"].(string); ok {
			if out, changed := rw.image(name); changed {
				ref["name"] = out
			}
		}
	case "ImageStreamTag", "ImageStreamImage":
		if ns, ok := ref["namespace"].(string); ok && ns != "" {
			ref["namespace"] = mapNamespace(nsMap, ns)
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
