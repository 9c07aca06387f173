// Package volume is the sidecar's PVC transfer reconciler. For each PVC that carries a transfer
// request (written by ferry's PVC backup action, or by hand) it prepares the target cluster — a
// namespace, a PVC, the transfer's certificates, a server pod and an endpoint — quiesces the
// app for a final pass, runs client pods on the source that copy the volume with the data plane
// (package dataplane), and writes progress back on the PVC, where the action's Progress() reads
// it. Each phase lives in its own file: admit.go, prepare.go, quiesce.go, transfer.go,
// finish.go.
package volume

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/sidecar"
)

// Reconciler copies PVCs that carry a transfer request to the target cluster, with a server pod
// there and a client pod here. Everything it knows is in the clusters — the PVC's status
// annotation and the labelled transfer objects — so it can be stopped at any moment and resumes
// where it was.
type Reconciler struct {
	*sidecar.Env
	// Pods starts transfer pods and reads the client's reports.
	Pods Pods

	admission *admission
	// cleaned remembers terminal transfers whose objects are gone, so a resync does not list
	// both clusters again for each of them.
	cleaned sync.Map // PVC key -> transfer ID
}

// NewReconciler returns a reconciler that runs pods through the clusters' API servers.
func NewReconciler(env *sidecar.Env) *Reconciler {
	return &Reconciler{Env: env, Pods: apiPods{}, admission: newAdmission()}
}

// Setup adds the PVC transfer reconciler to the sidecar's manager.
func Setup(mgr ctrl.Manager, env *sidecar.Env, workers int) error {
	return NewReconciler(env).SetupWithManager(mgr, workers)
}

// SetupWithManager watches PVCs with a transfer request or status, and ferry's client pods.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	hasTransfer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, req := o.GetAnnotations()[keys.TransferID]
		_, st := o.GetAnnotations()[keys.TransferStatus]
		return req || st
	})
	podToPVC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		ns, name, ok := strings.Cut(o.GetAnnotations()[keys.SourcePVC], "/")
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
	})
	if workers < 1 {
		workers = 4
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("pvc-transfer").
		For(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(hasTransfer)).
		Watches(&corev1.Pod{}, podToPVC).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// maxSteps bounds how many phases one reconcile walks through before it requeues.
const maxSteps = 5

// Reconcile moves one PVC's transfer on, through as many phases as are ready to go.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("pvc", req.NamespacedName.String())
	ctx = logr.NewContext(ctx, log)
	var pvc corev1.PersistentVolumeClaim
	if err := r.Cache.Get(ctx, req.NamespacedName, &pvc); err != nil {
		if apierrors.IsNotFound(err) {
			r.admission.release(req.String())
			return ctrl.Result{}, r.cleanupGone(ctx, req.Namespace, req.Name)
		}
		return ctrl.Result{}, err
	}
	treq, reqErr := operation.ParseTransferRequest(pvc.Namespace, pvc.Name, pvc.Annotations)
	st, stErr := operation.ParseTransferStatus(pvc.Annotations)
	if stErr != nil {
		log.Info("overwriting an unreadable transfer status", "error", stErr.Error())
		st = nil
	}
	if treq == nil && reqErr == nil {
		// The request was removed by hand: nothing to do but tidy up.
		r.admission.release(req.String())
		return ctrl.Result{}, r.cleanup(ctx, &pvc, "")
	}
	id := strings.TrimSpace(pvc.Annotations[keys.TransferID])
	if st != nil && st.ID == id && st.Phase.Terminal() {
		recordState(pvc.Namespace, pvc.Name, st) // a restarted data mover shows the last successes again
		r.admission.release(req.String())
		if cleaned, _ := r.cleaned.Load(req.String()); cleaned == id || st.Phase == operation.PhaseRefused {
			return ctrl.Result{}, nil
		}
		if st.Phase != operation.PhaseCompleted {
			cfg, _ := r.Config(ctx)
			r.bringBack(ctx, &pvc, id, cfg)
		}
		if err := r.cleanup(ctx, &pvc, st.Target); err != nil {
			return ctrl.Result{}, err
		}
		r.cleaned.Store(req.String(), id)
		return ctrl.Result{}, nil
	}
	// Nothing happens for a request Velero's plugins or an admin did not sign.
	refusal, err := r.Authenticate(ctx, operation.TransferKeys, &pvc, st == nil || st.ID != id)
	if err != nil {
		log.Info("cannot check the request's signature yet", "error", err.Error())
		return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
	}
	if refusal != nil {
		t := &job{r: r, pvc: &pvc, st: st, names: namesFor(pvc.Namespace, pvc.Name), log: log}
		return t.refuse(ctx, id, refusal)
	}
	if reqErr != nil {
		t := &job{r: r, pvc: &pvc, st: &operation.TransferStatus{Header: operation.Header{ID: id, Started: r.now()}, Last: operation.LastOf(st)}, log: log}
		return t.finish(ctx, operation.PhaseFailed, reqErr.Error())
	}
	r.cleaned.Delete(req.String())
	t := &job{r: r, pvc: &pvc, req: treq, st: st, names: namesFor(pvc.Namespace, pvc.Name), log: log}
	if st == nil || st.ID != treq.ID {
		return t.accept(ctx)
	}
	if treq.Cancel {
		return t.finish(ctx, operation.PhaseCancelled, "cancelled on request")
	}
	if treq.Backup != "" {
		gone, err := r.BackupGone(ctx, treq.Backup, types.UID(treq.ID))
		if err != nil {
			log.Info("cannot read the request's Backup yet", "error", err.Error())
		} else if gone != "" {
			return t.finish(ctx, operation.PhaseCancelled, "cancelled: "+gone)
		}
	}
	cfg, err := r.Config(ctx)
	if err != nil {
		return t.failedStep(ctx, err)
	}
	t.cfg = cfg
	if err := treq.Resolve(&pvc, cfg); err != nil {
		return t.finish(ctx, operation.PhaseFailed, err.Error())
	}
	return t.run(ctx)
}

// job is one reconcile of one PVC's transfer.
type job struct {
	r     *Reconciler
	pvc   *corev1.PersistentVolumeClaim
	req   *operation.TransferRequest
	st    *operation.TransferStatus
	cfg   *config.Config
	names transferNames
	log   logr.Logger
	// requireEmpty: the target PVC exists, unpaired: its server must find it empty.
	requireEmpty bool
}

// accept answers a new request with a Pending status. A transfer it replaces mid-way goes
// first: its pods, Secrets and endpoint on both clusters, and the workloads it quiesced come
// back. A stage does not replace a final under way: the final's app stays up, the stage is
// refused.
func (t *job) accept(ctx context.Context) (ctrl.Result, error) {
	if old := t.st; old != nil && !old.Phase.Terminal() {
		if err := t.r.cleanup(ctx, t.pvc, old.Target); err != nil {
			return ctrl.Result{}, err
		}
		restarted, err := quiesce.Restart(ctx, t.r.Source, t.pvc.Namespace, old.ID)
		if err != nil {
			return ctrl.Result{}, err
		}
		msg := fmt.Sprintf("transfer %s was replaced by %s before it finished", old.ID, t.req.ID)
		if len(restarted) > 0 {
			msg += "; brought back " + strings.Join(restarted, ", ")
		}
		t.r.Recorder.Event(t.pvc, corev1.EventTypeWarning, "TransferReplaced", msg)
		t.log.Info(msg)
		if old.Type == operation.Final && t.req.Type == operation.Stage {
			return t.refuse(ctx, t.req.ID, fmt.Errorf("a final transfer (%s) of this PVC was under way: a stage does not replace it; it was stopped and the app brought back, run the final backup again", old.ID))
		}
	}
	now := t.r.now()
	t.st = &operation.TransferStatus{Header: operation.Header{ID: t.req.ID, Phase: operation.PhasePending, Started: now, Since: now}, Type: t.req.Type, Target: t.req.Target(), Last: operation.LastOf(t.st)}
	if err := t.writeStatus(ctx); err != nil {
		return ctrl.Result{}, err
	}
	t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TransferAccepted", "%s transfer %s to %s accepted", t.req.Type, t.req.ID, t.st.Target)
	return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
}

// run steps through the phases until one has to wait, fails, or the transfer ends.
func (t *job) run(ctx context.Context) (ctrl.Result, error) {
	for range maxSteps {
		phase := t.st.Phase
		res, err := t.step(ctx)
		if err != nil {
			return t.failedStep(ctx, err)
		}
		if t.st.Phase == phase || t.st.Phase.Terminal() || !res.IsZero() {
			return res, nil
		}
	}
	return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
}

// step runs the current phase once. A phase that is done enters the next one and returns a
// zero Result; one that waits returns when to look again.
func (t *job) step(ctx context.Context) (ctrl.Result, error) {
	switch t.st.Phase {
	case operation.PhasePending:
		return t.admit(ctx)
	case operation.PhasePreparing:
		return t.prepare(ctx)
	case operation.PhaseQuiescing:
		return t.quiesce(ctx)
	case operation.PhaseTransferring:
		return t.sendData(ctx)
	}
	return ctrl.Result{}, sidecar.Permanent(fmt.Errorf("unknown phase %q in the transfer status", t.st.Phase))
}

// failedStep ends the transfer for an error no retry can fix, or for a phase out of time, and
// otherwise says it retries.
func (t *job) failedStep(ctx context.Context, err error) (ctrl.Result, error) {
	if sidecar.IsRefusal(err) {
		return t.finish(ctx, operation.PhaseRefused, err.Error())
	}
	if t.r.Refusals.Permanent("pvc/"+t.pvc.Namespace+"/"+t.pvc.Name, err, t.r.Clock.Now()) {
		return t.finish(ctx, operation.PhaseFailed, err.Error())
	}
	if limit := timeoutOf(t.st.Phase, t.cfg); sidecar.Expired(&t.st.Header, limit, t.r.Clock.Now()) {
		return t.finish(ctx, operation.PhaseFailed, fmt.Sprintf("%s timed out after %s: %v", t.st.Phase, limit, err))
	}
	// Transient (the target unreachable for a moment, a conflict): say so and try again.
	t.log.Info("retrying", "phase", t.st.Phase, "error", err.Error())
	t.st.Message = "retrying: " + err.Error()
	if werr := t.writeStatus(ctx); werr != nil {
		return ctrl.Result{}, werr
	}
	return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
}

// timeoutOf is how long a phase may keep retrying (none while ferry-config is unreadable).
func timeoutOf(p operation.Phase, cfg *config.Config) time.Duration {
	if cfg == nil {
		return 0
	}
	switch p {
	case operation.PhasePreparing:
		return cfg.PrepareTimeout
	case operation.PhaseQuiescing:
		return cfg.QuiesceTimeout
	}
	return 0
}

// enter moves the transfer to phase, writes it and records an Event.
func (t *job) enter(ctx context.Context, phase operation.Phase, reason, message string) error {
	t.st.Phase, t.st.Message, t.st.Since = phase, "", t.r.now()
	if err := t.writeStatus(ctx); err != nil {
		return err
	}
	t.r.Recorder.Event(t.pvc, corev1.EventTypeNormal, reason, message)
	t.log.Info(message, "phase", phase)
	return nil
}

// wait records why the transfer is waiting and looks again after a poll; a phase that waited
// past its time limit fails with the reason it waited for.
func (t *job) wait(ctx context.Context, why string) (ctrl.Result, error) {
	if limit := timeoutOf(t.st.Phase, t.cfg); sidecar.Expired(&t.st.Header, limit, t.r.Clock.Now()) {
		return t.finish(ctx, operation.PhaseFailed, fmt.Sprintf("%s timed out after %s: %s", t.st.Phase, limit, why))
	}
	t.st.Message = why
	return ctrl.Result{RequeueAfter: sidecar.Poll}, t.writeStatus(ctx)
}

func (t *job) writeStatus(ctx context.Context) error {
	recordState(t.pvc.Namespace, t.pvc.Name, t.st)
	return sidecar.WriteStatus(ctx, t.r.Clock, t.pvc, keys.TransferStatus, t.st, func(ctx context.Context, patch []byte) error {
		return t.r.Cache.Patch(ctx, t.pvc, client.RawPatch(types.MergePatchType, patch))
	})
}

func (r *Reconciler) now() *operation.Time { return operation.NewTime(r.Clock.Now()) }
