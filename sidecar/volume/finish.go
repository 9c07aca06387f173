package volume

import (
	"context"
	"errors"
	"fmt"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/internal/units"
	"github.com/ferry-dev/ferry/sidecar"
)

// finish ends a transfer: the terminal status first (so Velero's operation can end), then the
// transfer objects on both clusters are deleted. A failed cleanup is retried by later
// reconciles. The target PVC, the target namespace and quiesced workloads are never touched.
func (t *job) finish(ctx context.Context, phase operation.Phase, message string) (ctrl.Result, error) {
	now := t.r.now()
	if phase != operation.PhaseCompleted {
		if note := t.r.bringBack(ctx, t.pvc, t.st.ID, t.cfg); note != "" {
			message += "; " + note
		}
	}
	t.st.Phase, t.st.Message, t.st.Completed, t.st.Since = phase, message, now, now
	if phase == operation.PhaseCompleted {
		t.st.Last = t.st.Succeeded()
	}
	if err := t.writeStatus(ctx); err != nil {
		return ctrl.Result{}, err
	}
	key := t.pvc.Namespace + "/" + t.pvc.Name
	t.r.admission.release(key)
	typ := string(operation.Stage)
	if t.req != nil {
		typ = string(t.req.Type)
	}
	transfersTotal.WithLabelValues(typ, label(phase)).Inc()
	if t.st.Started != nil {
		transferDuration.WithLabelValues(typ, label(phase)).Observe(now.Sub(t.st.Started.Time).Seconds())
	}
	st := t.st
	switch phase {
	case operation.PhaseCompleted:
		transferBytesTotal.WithLabelValues(typ).Add(float64(st.BytesSent))
		if t.req != nil && t.req.Move {
			t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TransferCompleted", "final %s: what uses the PVC is stopped; its volume moves with the backup", st.ID)
			break
		}
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TransferCompleted", "%s transfer %s to %s completed: %d files, %d bytes sent of %d", typ, st.ID, st.Target, st.FilesSent, st.BytesSent, st.BytesTotal)
		if v := st.Verified; v != nil {
			repaired := ""
			if v.Repaired > 0 {
				repaired = fmt.Sprintf(" (after %d difference(s) that size and mtime did not show, copied again by content)", v.Repaired)
			}
			t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TransferVerified", "verified: %d files compared by content, %s read on each side, no difference%s", v.Files, units.Bytes(v.Bytes), repaired)
		}
	case operation.PhaseCancelled:
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TransferCancelled", "transfer %s cancelled", st.ID)
	case operation.PhaseRefused:
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferRefused", "transfer %s refused: %s", st.ID, message)
	default:
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferFailed", "transfer %s failed: %s", st.ID, message)
	}
	t.log.Info("transfer ended", "id", st.ID, "phase", phase, "message", message)
	if err := t.r.cleanup(ctx, t.pvc, st.Target); err != nil {
		t.log.Info("cleaning up failed; trying again", "error", err.Error())
		return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
	}
	t.r.cleaned.Store(key, st.ID)
	return ctrl.Result{}, nil
}

// bringBack puts back the workloads that the transfer with this ID quiesced, when it ends
// without completing: ferry never leaves an app down for a migration that did not happen
// (unless ferry-config keepQuiescedOnFailure says so). It says what it did, for the status; a
// failure is retried when the ended transfer is next looked at.
func (r *Reconciler) bringBack(ctx context.Context, pvc *corev1.PersistentVolumeClaim, id string, cfg *config.Config) string {
	if id == "" {
		return ""
	}
	if cfg != nil && cfg.KeepQuiescedOnFailure {
		left, err := quiesce.QuiescedBy(ctx, r.Source, pvc.Namespace, id)
		if err != nil || len(left) == 0 {
			return ""
		}
		r.Recorder.Eventf(pvc, corev1.EventTypeWarning, "AppLeftQuiesced", "the final transfer %s did not complete; %s stay quiesced (keepQuiescedOnFailure): `ferry-datamover rollback -n %s` brings them back", id, strings.Join(left, ", "), pvc.Namespace)
		return "left quiesced: " + strings.Join(left, ", ")
	}
	restarted, err := quiesce.Restart(ctx, r.Source, pvc.Namespace, id)
	if err != nil {
		logr.FromContextOrDiscard(ctx).Info("bringing the app back failed; trying again", "error", err.Error())
		return "bringing the app back failed (ferry tries again): " + err.Error()
	}
	if len(restarted) == 0 {
		return ""
	}
	r.Recorder.Eventf(pvc, corev1.EventTypeWarning, "AppRestarted", "the final transfer %s did not complete: brought back %s", id, strings.Join(restarted, ", "))
	return "brought back " + strings.Join(restarted, ", ")
}

// refuse answers a request the sidecar will not act on. Nothing of it was made; what an earlier
// transfer of this PVC left on the source goes (its client stops), the target is not touched.
func (t *job) refuse(ctx context.Context, id string, reason error) (ctrl.Result, error) {
	now := t.r.now()
	t.st = &operation.TransferStatus{Header: operation.Header{ID: id, Phase: operation.PhaseRefused, Message: reason.Error(), Started: now, Completed: now, Since: now}, Last: operation.LastOf(t.st)}
	if err := t.writeStatus(ctx); err != nil {
		return ctrl.Result{}, err
	}
	t.r.admission.release(t.pvc.Namespace + "/" + t.pvc.Name)
	transfersTotal.WithLabelValues(label(operation.Stage), label(operation.PhaseRefused)).Inc()
	t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferRefused", "transfer %s refused: %s", id, reason)
	t.log.Info("transfer refused", "id", id, "reason", reason.Error())
	return ctrl.Result{}, deleteTransferObjects(ctx, t.r.Source.Kube, nil, t.pvc.Namespace, t.names, t.names.client)
}

// cleanup deletes a PVC's transfer objects on both clusters: pods, Services and Routes (found by
// the PVC's label, whatever transfer made them), the certificate Secrets (by name, where those
// objects or the PVCs are; owned by the PVCs, so garbage collection takes any left behind), and
// the transfer service account of a namespace no other transfer uses any more. target is the target PVC
// "namespace/name" when known; "" searches every namespace of the target. It never deletes the
// target PVC, a namespace, or anything of the app's.
func (r *Reconciler) cleanup(ctx context.Context, pvc *corev1.PersistentVolumeClaim, target string) error {
	n := namesFor(pvc.Namespace, pvc.Name)
	var errs []error
	errs = append(errs, deleteTransferObjects(ctx, r.Source.Kube, nil, pvc.Namespace, n, n.client))
	cfg, err := r.Config(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("cannot clean up the target: %w", err))...)
	}
	tc, err := r.Target(ctx, cfg)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("cannot clean up the target: %w", err))...)
	}
	targetNS, _, _ := strings.Cut(target, "/")
	errs = append(errs, deleteTransferObjects(ctx, tc.Kube, tc.Dynamic, targetNS, n, n.server))
	return errors.Join(errs...)
}

// cleanupGone cleans up after a PVC that was deleted.
func (r *Reconciler) cleanupGone(ctx context.Context, namespace, name string) error {
	key := prometheus.Labels{"namespace": namespace, "pvc": name}
	transferPhase.DeletePartialMatch(key)
	transferPhaseSince.DeletePartialMatch(key)
	transferProgressBytes.Delete(key)
	transferSizeBytes.Delete(key)
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	return r.cleanup(ctx, pvc, "")
}

// deleteTransferObjects deletes one PVC's transfer objects in namespace ("" = all namespaces)
// of one cluster. dyn is nil on the client's side, which has no Services or Routes (the data
// mover may not list Services there).
func deleteTransferObjects(ctx context.Context, k kubernetes.Interface, dyn dynamic.Interface, namespace string, n transferNames, secret string) error {
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(n.selector()).String()}
	var errs []error
	touched := map[string]bool{}
	pods, err := k.CoreV1().Pods(namespace).List(ctx, sel)
	if err != nil {
		return fmt.Errorf("listing transfer pods: %w", err)
	}
	for _, p := range pods.Items {
		touched[p.Namespace] = true
		errs = append(errs, ignoreNotFound(k.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})))
	}
	if dyn != nil {
		svcs, err := k.CoreV1().Services(namespace).List(ctx, sel)
		if err != nil {
			return fmt.Errorf("listing transfer services: %w", err)
		}
		for _, s := range svcs.Items {
			touched[s.Namespace] = true
			errs = append(errs, ignoreNotFound(k.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})))
		}
	}
	if namespace != "" {
		touched[namespace] = true
	}
	// By name, where the transfer's pods, Services or PVC are: ferry may not list Secrets.
	for ns := range touched {
		errs = append(errs, ignoreNotFound(k.CoreV1().Secrets(ns).Delete(ctx, secret, metav1.DeleteOptions{})))
	}
	if dyn != nil {
		apis := kube.NewAPIs(k.Discovery())
		if ok, err := apis.Has(kube.RouteGV, "routes"); err != nil {
			errs = append(errs, err)
		} else if ok {
			routes, err := dyn.Resource(routeResource).Namespace(namespace).List(ctx, sel)
			if err != nil {
				errs = append(errs, fmt.Errorf("listing transfer routes: %w", err))
			} else {
				for _, r := range routes.Items {
					errs = append(errs, ignoreNotFound(dyn.Resource(routeResource).Namespace(r.GetNamespace()).Delete(ctx, r.GetName(), metav1.DeleteOptions{})))
				}
			}
		}
	}
	for ns := range touched {
		errs = append(errs, removeServiceAccountIfUnused(ctx, k, ns, n.hash))
	}
	return errors.Join(errs...)
}

// removeServiceAccountIfUnused deletes the transfer service account (and its SCC binding) of a
// namespace where no other PVC's transfer pods remain.
func removeServiceAccountIfUnused(ctx context.Context, k kubernetes.Interface, namespace, hash string) error {
	sel := labels.SelectorFromSet(map[string]string{keys.ManagedByLabel: keys.ManagedByValue}).String()
	pods, err := k.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.Labels[keys.TransferPVC] != hash {
			return nil
		}
	}
	return errors.Join(
		ignoreNotFound(k.RbacV1().RoleBindings(namespace).Delete(ctx, SCCClusterRole, metav1.DeleteOptions{})),
		ignoreNotFound(k.CoreV1().ServiceAccounts(namespace).Delete(ctx, TransferServiceAccount, metav1.DeleteOptions{})),
	)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
