package volume

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/sidecar"
)

// SCCClusterRole is the ClusterRole (deploy/) that grants `use` of the ferry-transfer SCC; on
// OpenShift the transfer service account of each namespace is bound to it.
const SCCClusterRole = "ferry-transfer-scc"

// ensureTransferServiceAccount makes the service account transfer pods run as, and on OpenShift
// binds it to the ClusterRole granting the ferry-transfer SCC.
func ensureTransferServiceAccount(ctx context.Context, k kubernetes.Interface, apis *kube.APIs, namespace string) error {
	lbl := ownLabels()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: TransferServiceAccount, Labels: lbl}}
	if _, err := k.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/%s: %w", namespace, TransferServiceAccount, err)
	}
	if ok, err := apis.Has(kube.SecurityGV, "securitycontextconstraints"); err != nil || !ok {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: SCCClusterRole, Labels: lbl},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: SCCClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: TransferServiceAccount, Namespace: namespace}},
	}
	if _, err := k.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding %s/%s to the ferry-transfer SCC: %w", namespace, TransferServiceAccount, err)
	}
	return nil
}

// serverPods lists the transfer's server pods on the target.
func (t *job) serverPods(ctx context.Context, tc *kube.Clients) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(t.names.labels(t.req.ID, RoleServer)).String()
	pods, err := tc.Kube.CoreV1().Pods(t.req.TargetNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing server pods on the target: %w", err)
	}
	return pods.Items, nil
}

// serverPod returns the transfer's server pod that is not being deleted, nil if there is none.
func (t *job) serverPod(ctx context.Context, tc *kube.Clients) (*corev1.Pod, error) {
	pods, err := t.serverPods(ctx, tc)
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if pods[i].DeletionTimestamp == nil {
			return &pods[i], nil
		}
	}
	return nil, nil
}

// ensureServer returns the transfer's live server pod, creating one when there is none. A server
// pod that ended before the client finished is replaced — but not one that exited 0 after the
// running client pod (nil: none) started: it had that client's completion report, and the
// client's pod is about to show it succeeded (kubelets report the two pods' ends in either order).
func (t *job) ensureServer(ctx context.Context, tc *kube.Clients, running *corev1.Pod) (*corev1.Pod, error) {
	pods, err := t.serverPods(ctx, tc)
	if err != nil {
		return nil, err
	}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if exitCode(p, ServeContainer) == dataplane.ExitTargetNotEmpty {
			return nil, sidecar.Refusal(fmt.Errorf("target PVC %s holds data ferry did not write; ferry does not overwrite it (an admin may allow it: annotation %s=true on the Backup, or allowOverwrite in ferry-config)", t.st.Target, keys.AllowOverwrite))
		}
		if p.Status.Phase == corev1.PodSucceeded && running != nil && !endedAt(p, ServeContainer).Before(running.CreationTimestamp.Time) {
			return p, nil
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			transferFailures.WithLabelValues(RoleServer).Inc()
			t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "ServerPodEnded", "server pod %s/%s ended (%s); starting another", p.Namespace, p.Name, podState(p))
			if err := tc.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
			continue
		}
		return p, nil
	}
	if err := ensureTransferServiceAccount(ctx, tc.Kube, tc.APIs, t.req.TargetNamespace); err != nil {
		return nil, err
	}
	created, err := t.r.Pods.Create(ctx, tc.Kube, serverPod(t.names, t.req.TargetNamespace, t.req.TargetName, t.req.ID, t.cfg, t.requireEmpty, isBlock(t.pvc)))
	if err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return nil, sidecar.Permanent(fmt.Errorf("creating the server pod on the target: %w", err))
		}
		return nil, fmt.Errorf("creating the server pod on the target: %w", err)
	}
	return created, nil
}

// endedAt is when a pod's container ended (zero while it runs).
func endedAt(p *corev1.Pod, container string) time.Time {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Terminated != nil {
			return cs.State.Terminated.FinishedAt.Time
		}
	}
	return time.Time{}
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState says briefly where a pod is: its phase and the first reason it gives.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	if p.Status.Phase == corev1.PodRunning && !podReady(p) {
		s = "Running, not ready yet"
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return strings.TrimSpace(s + ": " + cs.State.Waiting.Reason + " " + cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			msg := strings.TrimSpace(cs.State.Terminated.Message)
			if i := strings.LastIndex(msg, "\n"); i >= 0 {
				msg = msg[i+1:]
			}
			return fmt.Sprintf("%s: exit code %d %s", s, cs.State.Terminated.ExitCode, msg)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status == corev1.ConditionFalse && c.Message != "" {
			return s + ": " + c.Message
		}
	}
	return s
}

// exitCode is how container name of a pod ended; -1 while it has not.
func exitCode(p *corev1.Pod, name string) int {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name && cs.State.Terminated != nil {
			return int(cs.State.Terminated.ExitCode)
		}
	}
	return -1
}

// deleteServerPods stops the transfer's server pods (ensureServer starts another).
func deleteServerPods(ctx context.Context, tc *kube.Clients, namespace string, n transferNames, id string) error {
	sel := labels.SelectorFromSet(n.labels(id, RoleServer)).String()
	pods, err := tc.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("listing server pods on the target: %w", err)
	}
	for _, p := range pods.Items {
		if err := tc.Kube.CoreV1().Pods(namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
