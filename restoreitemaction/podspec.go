package restoreitemaction

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// PodSpecAction rewrites what ties a pod (or a pod template: Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job, CronJob, DeploymentConfig) to the source cluster:
//   - image references into the source's internal registry point at the target's, in the
//     mapped namespace (the image-stream copy put the images there, with the same digests);
//   - pull secrets OpenShift generated for a service account are swapped for the target's;
//   - nodeName and hostname selectors/affinity of source nodes are removed;
//   - DeploymentConfig image-change triggers and image.openshift.io/triggers follow the
//     namespace mapping.
//
// On plain Kubernetes there is no internal registry and no generated pull secret: only node
// pinning applies, and nothing waits.
type PodSpecAction struct {
	log      logrus.FieldLogger
	clients  *kube.Clients
	registry func() string
	secrets  *pullSecrets
}

var _ riav1.RestoreItemAction = (*PodSpecAction)(nil)

func NewPodSpecAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *PodSpecAction {
	return &PodSpecAction{log: log, clients: clients, registry: targetRegistry(log, clients, cfg), secrets: newPullSecrets(clients.Kube)}
}

func (a *PodSpecAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: kube.PodTemplateResources}, nil
}

func (a *PodSpecAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok || skipReason(input) != "" {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	nsMap := namespaceMapping(input)
	targetNS := mapNamespace(nsMap, u.GetNamespace())
	log := a.log.WithFields(logrus.Fields{"kind": u.GetKind(), "namespace": u.GetNamespace(), "name": u.GetName()})
	rw := imageRewrite{from: from.GetAnnotations()[keys.SourceRegistry], nsMap: nsMap}
	if rw.from != "" {
		rw.to = a.registry()
	}

	spec, err := podSpec(u)
	if err != nil {
		return nil, err
	}
	backedUp, err := podSpec(from)
	if err != nil {
		return nil, err
	}
	if spec != nil {
		was := containerImages(backedUp)
		forEachContainer(spec, func(key string, c map[string]any) {
			img, _ := c["image"].(string)
			if out, changed := rw.once(log, img, was[key]); changed {
				c["image"] = out
				log.Infof("image %s rewritten to %s", img, out)
			}
		})
		openShift, err := a.clients.APIs.Has(kube.ImageGV, "imagestreams")
		if err != nil {
			return nil, err
		}
		if _, err := a.secrets.swap(context.Background(), log, spec, targetNS, openShift); err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		// Velero's own pod action clears a Pod's nodeName; templates are ours.
		if unpinNodes(spec, u.GetKind() != "Pod") {
			log.Info("removed pinning to source nodes")
		}
		if err := setPodSpec(u, spec); err != nil {
			return nil, err
		}
	}
	if u.GetKind() == "DeploymentConfig" {
		if err := mapDeploymentConfigTriggers(u, from, nsMap, rw, log); err != nil {
			return nil, err
		}
	}
	if err := mapImageTriggerAnnotation(u, nsMap); err != nil {
		return nil, err
	}
	dropOVPRegistryStamp(u, rw)
	dropSourceStamps(u)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}

// mapDeploymentConfigTriggers maps image-change triggers: the namespace of the image stream tag
// they follow, and the last image they deployed. openshift-velero-plugin maps the namespace too:
// what it changed before ferry ran is left as it is (see once).
func mapDeploymentConfigTriggers(u, backedUp *unstructured.Unstructured, nsMap map[string]string, rw imageRewrite, log logrus.FieldLogger) error {
	triggers, found, err := unstructured.NestedSlice(u.Object, "spec", "triggers")
	if err != nil || !found {
		return err
	}
	was, _, _ := unstructured.NestedSlice(backedUp.Object, "spec", "triggers")
	for i, t := range triggers {
		params, _ := t.(map[string]any)["imageChangeParams"].(map[string]any)
		if params == nil {
			continue
		}
		var wasParams map[string]any
		if i < len(was) {
			w, _ := was[i].(map[string]any)
			wasParams, _ = w["imageChangeParams"].(map[string]any)
		}
		if from, ok := params["from"].(map[string]any); ok {
			if ns, ok := from["namespace"].(string); ok && ns != "" {
				wasNS, _, _ := unstructured.NestedString(wasParams, "from", "namespace")
				from["namespace"] = once(ns, wasNS, func(ns string) string { return mapNamespace(nsMap, ns) })
			}
		}
		if last, ok := params["lastTriggeredImage"].(string); ok {
			wasLast, _ := wasParams["lastTriggeredImage"].(string)
			if out, changed := rw.once(log, last, wasLast); changed {
				params["lastTriggeredImage"] = out
			}
		}
	}
	return unstructured.SetNestedSlice(u.Object, triggers, "spec", "triggers")
}

// mapImageTriggerAnnotation maps from.namespace inside image.openshift.io/triggers.
func mapImageTriggerAnnotation(u *unstructured.Unstructured, nsMap map[string]string) error {
	ann := u.GetAnnotations()
	raw, ok := ann[keys.ImageTriggers]
	if !ok || len(nsMap) == 0 {
		return nil
	}
	var triggers []map[string]any
	if err := json.Unmarshal([]byte(raw), &triggers); err != nil {
		return fmt.Errorf("%s %s/%s: annotation %s is not a JSON list of triggers: %v", u.GetKind(), u.GetNamespace(), u.GetName(), keys.ImageTriggers, err)
	}
	for _, t := range triggers {
		if from, ok := t["from"].(map[string]any); ok {
			if ns, ok := from["namespace"].(string); ok && ns != "" {
				from["namespace"] = mapNamespace(nsMap, ns)
			}
		}
	}
	b, err := json.Marshal(triggers)
	if err != nil {
		return err
	}
	ann[keys.ImageTriggers] = string(b)
	u.SetAnnotations(ann)
	return nil
}

// dropSourceStamps removes what the backup actions stamped for the restore's use.
func dropSourceStamps(u *unstructured.Unstructured) {
	ann := u.GetAnnotations()
	if ann == nil {
		return
	}
	for _, k := range []string{keys.SourceRegistry, keys.SourceServerVersion, keys.BackupMigration} {
		delete(ann, k)
	}
	if len(ann) == 0 {
		ann = nil
	}
	u.SetAnnotations(ann)
}

func namespaceMapping(input *velero.RestoreItemActionExecuteInput) map[string]string {
	if input.Restore == nil {
		return nil
	}
	return input.Restore.Spec.NamespaceMapping
}

func mapNamespace(nsMap map[string]string, ns string) string {
	if m, ok := nsMap[ns]; ok {
		return m
	}
	return ns
}
