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

	"github.com/ferry-dev/ferry/internal/keys"
)

// Resources are the resources Quiesce knows, as Velero names them.
var Resources = []string{
	"deployments.apps", "statefulsets.apps", "replicasets.apps", "replicationcontrollers",
	"deploymentconfigs.apps.openshift.io", "daemonsets.apps", "cronjobs.batch", "jobs.batch",
}

// Supported reports whether Quiesce knows kind.
func Supported(kind string) bool {
	switch kind {
	case "Deployment", "StatefulSet", "ReplicaSet", "ReplicationController", "DeploymentConfig", "DaemonSet", "CronJob", "Job":
		return true
	}
	return false
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
	switch u.GetKind() {
	case "Deployment", "StatefulSet", "ReplicaSet", "ReplicationController", "DeploymentConfig":
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
	case "CronJob", "Job":
		suspend, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
		ann[keys.PreQuiesceSuspend] = strconv.FormatBool(suspend)
		if err := unstructured.SetNestedField(u.Object, true, "spec", "suspend"); err != nil {
			return false, describe(u, err)
		}
	case "DaemonSet":
		sel, _, err := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
		if err != nil {
			return false, describe(u, err)
		}
		b, _ := json.Marshal(sel)
		ann[keys.PreQuiesceNodeSelector] = string(b)
		if err := unstructured.SetNestedStringMap(u.Object, map[string]string{keys.QuiesceNodeSelector: "true"}, "spec", "template", "spec", "nodeSelector"); err != nil {
			return false, describe(u, err)
		}
	default:
		return false, fmt.Errorf("%s %s/%s: ferry cannot quiesce this kind", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	u.SetAnnotations(ann)
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[keys.Quiesced] = id
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
