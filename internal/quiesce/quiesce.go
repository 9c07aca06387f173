// Package quiesce stops and restarts the workloads that use a volume, on unstructured objects,
// remembering what it changed in annotations so that undoing it needs nothing but the object.
// The sidecar quiesces on the source before a final transfer; the restore puts the remembered
// values back on the target; `ferry-datamover rollback` puts them back on the source.
package quiesce

import (
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/names"
)

// How is the way a kind of workload is stopped.
type How int

const (
	// ScaleToZero sets spec.replicas to 0.
	ScaleToZero How = iota
	// Suspend sets spec.suspend (CronJob, Job).
	Suspend
	// NoNode gives the pod template a node selector no node matches (DaemonSet).
	NoNode
)

// Kind is a kind of object that runs pods and that Quiesce knows how to stop.
type Kind struct {
	Kind     string
	Resource schema.GroupVersionResource
	How      How
	// OwnedBy lists the kinds whose controller manages this kind: ferry quiesces the owner,
	// whose controller then scales the owned object down.
	OwnedBy []string
	// OpenShift kinds are looked for only where the API is served.
	OpenShift bool
}

// VeleroResource is the resource as Velero's ResourceSelector names it ("deployments.apps").
func (k Kind) VeleroResource() string {
	if k.Resource.Group == "" {
		return k.Resource.Resource
	}
	return k.Resource.Resource + "." + k.Resource.Group
}

// Kinds is the one table of workload kinds: the sidecar quiesces them, the restore and
// `ferry-datamover rollback` bring them back.
var Kinds = []Kind{
	{Kind: "Deployment", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
	{Kind: "StatefulSet", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}},
	{Kind: "DaemonSet", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, How: NoNode},
	{Kind: "ReplicaSet", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, OwnedBy: []string{"Deployment"}},
	{Kind: "ReplicationController", Resource: schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}, OwnedBy: []string{"DeploymentConfig"}},
	{Kind: "CronJob", Resource: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, How: Suspend},
	{Kind: "Job", Resource: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, How: Suspend, OwnedBy: []string{"CronJob"}},
	{Kind: "DeploymentConfig", Resource: kube.AppsGV.WithResource("deploymentconfigs"), OpenShift: true},
}

// Resources are the Kinds as Velero names them.
func Resources() []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = k.VeleroResource()
	}
	return out
}

// KindOf returns the table's entry for kind.
func KindOf(kind string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// Quiesced reports whether u carries ferry's quiesce annotations.
func Quiesced(u *unstructured.Unstructured) bool {
	ann := u.GetAnnotations()
	for _, k := range []string{keys.PreQuiesceReplicas, keys.PreQuiesceSuspend, keys.PreQuiesceNodeSelector} {
		if _, ok := ann[k]; ok {
			return true
		}
	}
	return false
}

// Quiesce scales u down (replicas 0, CronJob/Job suspended, DaemonSet pinned to a node label no
// node has), recording the old values; id (a transfer ID) labels the object. It is idempotent:
// an object already quiesced keeps its first recorded values. It reports whether u changed.
func Quiesce(u *unstructured.Unstructured, id string) (bool, error) {
	if Quiesced(u) {
		return false, nil
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	k, ok := KindOf(u.GetKind())
	if !ok {
		return false, fmt.Errorf("%s %s/%s: ferry cannot quiesce this kind", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	switch k.How {
	case ScaleToZero:
		replicas, found, err := unstructured.NestedInt64(u.Object, "spec", "replicas")
		if err != nil {
			return false, describe(u, err)
		}
		if !found {
			replicas = 1 // the API default
		}
		ann[keys.PreQuiesceReplicas] = strconv.FormatInt(replicas, 10)
		if err := unstructured.SetNestedField(u.Object, int64(0), "spec", "replicas"); err != nil {
			return false, describe(u, err)
		}
		if u.GetKind() == "DeploymentConfig" {
			paused, _, _ := unstructured.NestedBool(u.Object, "spec", "paused")
			ann[keys.PreQuiescePaused] = strconv.FormatBool(paused)
			if err := unstructured.SetNestedField(u.Object, false, "spec", "paused"); err != nil {
				return false, describe(u, err)
			}
		}
	case Suspend:
		suspend, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
		ann[keys.PreQuiesceSuspend] = strconv.FormatBool(suspend)
		if err := unstructured.SetNestedField(u.Object, true, "spec", "suspend"); err != nil {
			return false, describe(u, err)
		}
	case NoNode:
		sel, _, err := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
		if err != nil {
			return false, describe(u, err)
		}
		b, _ := json.Marshal(sel)
		ann[keys.PreQuiesceNodeSelector] = string(b)
		if err := unstructured.SetNestedStringMap(u.Object, map[string]string{keys.QuiesceNodeSelector: "true"}, "spec", "template", "spec", "nodeSelector"); err != nil {
			return false, describe(u, err)
		}
	}
	u.SetAnnotations(ann)
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[keys.Quiesced] = names.Label(id)
	u.SetLabels(labels)
	return true, nil
}

// Unquiesce puts back what Quiesce recorded and removes its annotations and label. A malformed
// annotation is an error naming the object and the key; u is then left unchanged.
func Unquiesce(u *unstructured.Unstructured) (bool, error) {
	if !Quiesced(u) {
		return false, nil
	}
	work := u.DeepCopy()
	ann := work.GetAnnotations()
	if v, ok := ann[keys.PreQuiesceReplicas]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return false, malformed(u, keys.PreQuiesceReplicas, v, "want a replica count")
		}
		if err := unstructured.SetNestedField(work.Object, n, "spec", "replicas"); err != nil {
			return false, describe(u, err)
		}
	}
	if v, ok := ann[keys.PreQuiescePaused]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, malformed(u, keys.PreQuiescePaused, v, "want true or false")
		}
		if err := unstructured.SetNestedField(work.Object, b, "spec", "paused"); err != nil {
			return false, describe(u, err)
		}
	}
	if v, ok := ann[keys.PreQuiesceSuspend]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, malformed(u, keys.PreQuiesceSuspend, v, "want true or false")
		}
		if err := unstructured.SetNestedField(work.Object, b, "spec", "suspend"); err != nil {
			return false, describe(u, err)
		}
	}
	if v, ok := ann[keys.PreQuiesceNodeSelector]; ok {
		var sel map[string]string
		if err := json.Unmarshal([]byte(v), &sel); err != nil {
			return false, malformed(u, keys.PreQuiesceNodeSelector, v, "want a JSON object of node labels")
		}
		if len(sel) == 0 {
			unstructured.RemoveNestedField(work.Object, "spec", "template", "spec", "nodeSelector")
		} else if err := unstructured.SetNestedStringMap(work.Object, sel, "spec", "template", "spec", "nodeSelector"); err != nil {
			return false, describe(u, err)
		}
	}
	for _, k := range []string{keys.PreQuiesceReplicas, keys.PreQuiescePaused, keys.PreQuiesceSuspend, keys.PreQuiesceNodeSelector} {
		delete(ann, k)
	}
	work.SetAnnotations(ann)
	labels := work.GetLabels()
	delete(labels, keys.Quiesced)
	work.SetLabels(labels)
	u.Object = work.Object
	return true, nil
}

func malformed(u *unstructured.Unstructured, key, value, want string) error {
	return fmt.Errorf("%s %s/%s: annotation %s=%q: %s", u.GetKind(), u.GetNamespace(), u.GetName(), key, value, want)
}

func describe(u *unstructured.Unstructured, err error) error {
	return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
}
