package quiesce

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/names"
)

// ErrBarePod: a pod mounts the volume and no controller owns it, so nothing can scale it down
// and ferry never deletes a pod. Waiting does not help; the user has to stop it.
var ErrBarePod = errors.New("a pod with no controller uses the volume")

// kinds lists the Kinds the cluster serves (OpenShift kinds only where their API is).
func kinds(apis *kube.APIs) ([]Kind, error) {
	var out []Kind
	for _, k := range Kinds {
		if k.OpenShift {
			ok, err := apis.Has(k.Resource.GroupVersion(), k.Resource.Resource)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// WorkloadsUsing returns the top-level workloads in namespace whose pod template mounts the PVC
// (or, for StatefulSets, whose volume claim template made it).
func WorkloadsUsing(ctx context.Context, c *kube.Clients, namespace, pvc string) ([]*unstructured.Unstructured, error) {
	return listWorkloads(ctx, c, namespace, func(k Kind, u *unstructured.Unstructured) bool {
		return mountsPVC(u, pvc) || (k.Kind == "StatefulSet" && claimTemplateMade(u, pvc))
	})
}

// WorkloadsIn returns every top-level workload in namespace (a namespace-wide quiesce).
func WorkloadsIn(ctx context.Context, c *kube.Clients, namespace string) ([]*unstructured.Unstructured, error) {
	return listWorkloads(ctx, c, namespace, func(Kind, *unstructured.Unstructured) bool { return true })
}

// listWorkloads lists the top-level workloads of the served kinds in namespace that match picks:
// objects a listed kind's controller owns are left to that owner.
func listWorkloads(ctx context.Context, c *kube.Clients, namespace string, picks func(Kind, *unstructured.Unstructured) bool) ([]*unstructured.Unstructured, error) {
	served, err := kinds(c.APIs)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, k := range served {
		list, err := c.Dynamic.Resource(k.Resource).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", k.Resource.Resource, namespace, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			if !ownedByAny(u, k.OwnedBy) && picks(k, u) {
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
		vm, _ := v.(map[string]any)
		name, _, _ := unstructured.NestedString(vm, "persistentVolumeClaim", "claimName")
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
		tm, _ := t.(map[string]any)
		name, _, _ := unstructured.NestedString(tm, "metadata", "name")
		if rest, ok := strings.CutPrefix(claim, name+"-"+sts.GetName()+"-"); ok && ordinal.MatchString(rest) {
			return true
		}
	}
	return false
}

// PodsUsing returns the app pods (not ferry's) in namespace that mount the PVC and have not
// finished. It asks the API server, not a cache: a final pass must see every pod.
func PodsUsing(ctx context.Context, c *kube.Clients, namespace, pvc string) ([]corev1.Pod, error) {
	pods, err := c.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
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

// CanStop says whether StopUsers could stop everything that uses the PVC: ErrBarePod when a pod
// mounts it with no controller. Asked before a final pass makes anything, and again at quiesce.
func CanStop(ctx context.Context, c *kube.Clients, namespace, pvc string) error {
	pods, err := PodsUsing(ctx, c, namespace, pvc)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if len(p.OwnerReferences) == 0 {
			return fmt.Errorf("pod %s/%s mounts PVC %s and has no controller to scale down; stop it, then run the final backup again: %w", namespace, p.Name, pvc, ErrBarePod)
		}
	}
	return nil
}

// StopUsers quiesces every workload using the PVC (with wholeNamespace, every workload of its
// namespace) and returns "Kind/name" of each, sorted. A pod that mounts the PVC with no
// controller is ErrBarePod; other bare pods of the namespace are not ferry's to stop.
func StopUsers(ctx context.Context, c *kube.Clients, namespace, pvc, id string, wholeNamespace bool) ([]string, error) {
	if err := CanStop(ctx, c, namespace, pvc); err != nil {
		return nil, err
	}
	var list []*unstructured.Unstructured
	var err error
	if wholeNamespace {
		list, err = WorkloadsIn(ctx, c, namespace)
	} else {
		list, err = WorkloadsUsing(ctx, c, namespace, pvc)
	}
	if err != nil {
		return nil, err
	}
	var done []string
	for _, w := range list {
		k, _ := KindOf(w.GetKind())
		res := c.Dynamic.Resource(k.Resource).Namespace(namespace)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := res.Get(ctx, w.GetName(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			changed, err := Quiesce(cur, id)
			if err != nil || !changed {
				return err
			}
			_, err = res.Update(ctx, cur, metav1.UpdateOptions{})
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

// Change is one thing Restart or Rollback put back (or, in a dry run, would).
type Change struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// What was put back: "unquiesced", or "reclaim policy back to Delete".
	What string `json:"what"`
}

func (c Change) String() string {
	if c.Namespace == "" {
		return c.Kind + " " + c.Name + " " + c.What
	}
	return c.Kind + " " + c.Namespace + "/" + c.Name + " " + c.What
}

// Restart brings back the workloads in namespace that the transfer with this ID quiesced (its
// final pass did not complete) and says what it changed.
func Restart(ctx context.Context, c *kube.Clients, namespace, id string) ([]string, error) {
	served, err := kinds(c.APIs)
	if err != nil {
		return nil, err
	}
	changes, err := restart(ctx, c, served, namespace, keys.Quiesced+"="+names.Label(id), false)
	var out []string
	for _, ch := range changes {
		out = append(out, ch.String())
	}
	return out, err
}

// QuiescedBy names the workloads in namespace that the transfer with this ID quiesced.
func QuiescedBy(ctx context.Context, c *kube.Clients, namespace, id string) ([]string, error) {
	served, err := kinds(c.APIs)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range served {
		list, err := c.Dynamic.Resource(k.Resource).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: keys.Quiesced + "=" + names.Label(id)})
		if err != nil {
			return out, fmt.Errorf("listing quiesced %s: %w", k.Resource.Resource, err)
		}
		for _, u := range list.Items {
			out = append(out, u.GetKind()+"/"+u.GetName())
		}
	}
	return out, nil
}

// restart unquiesces the workloads of the served kinds in namespace ("" for all) that selector
// picks (in a dry run it only says which).
func restart(ctx context.Context, c *kube.Clients, served []Kind, namespace, selector string, dryRun bool) ([]Change, error) {
	var changed []Change
	for _, k := range served {
		res := c.Dynamic.Resource(k.Resource)
		list, err := res.Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return changed, fmt.Errorf("listing quiesced %s: %w", k.Resource.Resource, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			if ok, err := Unquiesce(u); err != nil || !ok {
				if err != nil {
					return changed, err
				}
				continue
			}
			if !dryRun {
				if _, err := res.Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
					return changed, fmt.Errorf("unquiescing %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
			changed = append(changed, Change{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(), What: "unquiesced"})
		}
	}
	return changed, nil
}

var persistentVolumes = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}

// Rollback undoes on the source what a migration changed there: it brings back every workload
// ferry quiesced in the namespaces (all namespaces when none given) and puts back the reclaim
// policy of moved PVs. It returns what it changed; a dry run changes nothing and returns what
// it would change.
func Rollback(ctx context.Context, c *kube.Clients, namespaces []string, dryRun bool) ([]Change, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	served, err := kinds(c.APIs)
	if err != nil {
		return nil, err
	}
	var changed []Change
	for _, ns := range namespaces {
		done, err := restart(ctx, c, served, ns, keys.Quiesced, dryRun)
		changed = append(changed, done...)
		if err != nil {
			return changed, err
		}
	}
	pvs, err := c.Dynamic.Resource(persistentVolumes).List(ctx, metav1.ListOptions{})
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
		if !dryRun {
			if _, err := c.Dynamic.Resource(persistentVolumes).Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
				return changed, fmt.Errorf("restoring the reclaim policy of PV %s: %w", pv.GetName(), err)
			}
		}
		changed = append(changed, Change{Kind: "PV", Name: pv.GetName(), What: "reclaim policy back to " + orig})
	}
	return changed, nil
}
