package datamover

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/quiesce"
)

// workloadKind is a kind of object that runs pods, and the kinds that may own it (ferry quiesces
// the owner, whose controller then scales the owned object down).
type workloadKind struct {
	gvr       schema.GroupVersionResource
	kind      string
	ownedBy   []string
	openShift bool
}

var workloadKinds = []workloadKind{
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, kind: "Deployment"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, kind: "StatefulSet"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, kind: "DaemonSet"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, kind: "ReplicaSet", ownedBy: []string{"Deployment"}},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}, kind: "ReplicationController", ownedBy: []string{"DeploymentConfig"}},
	{gvr: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, kind: "CronJob"},
	{gvr: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, kind: "Job", ownedBy: []string{"CronJob"}},
	{gvr: kube.AppsGV.WithResource("deploymentconfigs"), kind: "DeploymentConfig", openShift: true},
}

// workloadsUsing returns the top-level workloads in namespace whose pod template mounts the PVC
// (or, for StatefulSets, whose volume claim template made it).
func workloadsUsing(ctx context.Context, dyn dynamic.Interface, apis *kube.APIs, namespace, pvc string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, wk := range workloadKinds {
		if wk.openShift {
			if ok, err := apis.Has(wk.gvr.GroupVersion(), wk.gvr.Resource); err != nil || !ok {
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		list, err := dyn.Resource(wk.gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", wk.gvr.Resource, namespace, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			if ownedByAny(u, wk.ownedBy) {
				continue
			}
			if mountsPVC(u, pvc) || (wk.kind == "StatefulSet" && claimTemplateMade(u, pvc)) {
				out = append(out, u)
			}
		}
	}
	return out, nil
}

func ownedByAny(u *unstructured.Unstructured, kinds []string) bool {
	for _, ref := range u.GetOwnerReferences() {
		for _, k := range kinds {
			if ref.Kind == k && ref.Controller != nil && *ref.Controller {
				return true
			}
		}
	}
	return false
}

// mountsPVC reports whether a pod or pod template mounts claim.
func mountsPVC(u *unstructured.Unstructured, claim string) bool {
	path, ok := kube.PodSpecPath(u.GetKind())
	if !ok {
		return false
	}
	volumes, _, _ := unstructured.NestedSlice(u.Object, append(path, "volumes")...)
	for _, v := range volumes {
		name, _, _ := unstructured.NestedString(v.(map[string]any), "persistentVolumeClaim", "claimName")
		if name == claim {
			return true
		}
	}
	return false
}

var ordinal = regexp.MustCompile(`^[0-9]+$`)

// claimTemplateMade reports whether a StatefulSet's volume claim templates made claim
// ("<template>-<statefulset>-<ordinal>").
func claimTemplateMade(sts *unstructured.Unstructured, claim string) bool {
	templates, _, _ := unstructured.NestedSlice(sts.Object, "spec", "volumeClaimTemplates")
	for _, t := range templates {
		name, _, _ := unstructured.NestedString(t.(map[string]any), "metadata", "name")
		if rest, ok := strings.CutPrefix(claim, name+"-"+sts.GetName()+"-"); ok && ordinal.MatchString(rest) {
			return true
		}
	}
	return false
}

// podsUsing returns the app pods (not ferry's) in namespace that mount the PVC and have not
// finished.
func podsUsing(ctx context.Context, reader client.Reader, namespace, pvc string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Labels[keys.ManagedByLabel] == keys.ManagedByValue || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// quiesceWorkloads scales down every workload using the PVC and returns "Kind/name" of each.
// A pod that mounts the PVC with no controller cannot be stopped without deleting it, which
// ferry never does: that is an error asking the user to stop it.
func quiesceWorkloads(ctx context.Context, dyn dynamic.Interface, apis *kube.APIs, reader client.Reader, namespace, pvc, id string) ([]string, error) {
	pods, err := podsUsing(ctx, reader, namespace, pvc)
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if len(p.OwnerReferences) == 0 {
			return nil, permanent(fmt.Errorf("pod %s/%s mounts PVC %s and has no controller to scale down; stop it, then run the final backup again", namespace, p.Name, pvc))
		}
	}
	workloads, err := workloadsUsing(ctx, dyn, apis, namespace, pvc)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, w := range workloads {
		gvr := gvrOfKind(w.GetKind())
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := dyn.Resource(gvr).Namespace(namespace).Get(ctx, w.GetName(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			changed, err := quiesce.Quiesce(cur, id)
			if err != nil || !changed {
				return err
			}
			_, err = dyn.Resource(gvr).Namespace(namespace).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return done, fmt.Errorf("quiescing %s %s/%s: %w", w.GetKind(), namespace, w.GetName(), err)
		}
		done = append(done, w.GetKind()+"/"+w.GetName())
	}
	sort.Strings(done)
	return done, nil
}

func gvrOfKind(kind string) schema.GroupVersionResource {
	for _, wk := range workloadKinds {
		if wk.kind == kind {
			return wk.gvr
		}
	}
	return schema.GroupVersionResource{}
}

// nodeOf returns the node of a running pod that mounts the PVC, where a ReadWriteOnce volume
// can be mounted a second time, or "" when none runs.
func nodeOf(pods []corev1.Pod) string {
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			return p.Spec.NodeName
		}
	}
	return ""
}

// Rollback undoes on the source what a migration changed there: it brings back every workload
// ferry quiesced in the namespaces (all namespaces when none given) and puts back the reclaim
// policy of moved PVs. It returns what it changed.
func Rollback(ctx context.Context, dyn dynamic.Interface, apis *kube.APIs, namespaces []string) ([]string, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var changed []string
	for _, ns := range namespaces {
		for _, wk := range workloadKinds {
			if wk.openShift {
				if ok, err := apis.Has(wk.gvr.GroupVersion(), wk.gvr.Resource); err != nil || !ok {
					if err != nil {
						return changed, err
					}
					continue
				}
			}
			list, err := dyn.Resource(wk.gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: keys.Quiesced})
			if err != nil {
				return changed, fmt.Errorf("listing quiesced %s: %w", wk.gvr.Resource, err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				if ok, err := quiesce.Unquiesce(u); err != nil || !ok {
					if err != nil {
						return changed, err
					}
					continue
				}
				if _, err := dyn.Resource(wk.gvr).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
					return changed, fmt.Errorf("unquiescing %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
				changed = append(changed, fmt.Sprintf("%s %s/%s unquiesced", u.GetKind(), u.GetNamespace(), u.GetName()))
			}
		}
	}
	pvs, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		return changed, fmt.Errorf("listing persistent volumes: %w", err)
	}
	want := map[string]bool{}
	for _, ns := range namespaces {
		want[ns] = true
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		orig, ok := pv.GetAnnotations()[keys.OriginalReclaimPolicy]
		claimNS, _, _ := unstructured.NestedString(pv.Object, "spec", "claimRef", "namespace")
		if !ok || !(want[metav1.NamespaceAll] || want[claimNS]) {
			continue
		}
		if err := unstructured.SetNestedField(pv.Object, orig, "spec", "persistentVolumeReclaimPolicy"); err != nil {
			return changed, err
		}
		ann := pv.GetAnnotations()
		delete(ann, keys.OriginalReclaimPolicy)
		pv.SetAnnotations(ann)
		if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}).Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return changed, fmt.Errorf("restoring the reclaim policy of PV %s: %w", pv.GetName(), err)
		}
		changed = append(changed, fmt.Sprintf("PV %s reclaim policy back to %s", pv.GetName(), orig))
	}
	return changed, nil
}
