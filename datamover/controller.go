package datamover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/transfer"
)

const (
	// maxClientAttempts: client pods per transfer; `send` itself also retries within each.
	maxClientAttempts = 3
	// pollInterval: how often a running transfer's progress is read (the target is polled).
	pollInterval = 5 * time.Second
)

// permanentError fails a transfer at once; other errors are retried until the phase times out.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool { return errors.As(err, &permanentError{}) || kube.IsConfigError(err) }

// Controller is the sidecar: it reconciles PVCs that carry a transfer request (see
// internal/transfer) and copies each to the target cluster with a server pod there and a client
// pod here. Everything it knows is in the clusters: the PVC's status annotation and the labelled
// transfer objects, so it can be stopped at any moment and resumes where it was.
type Controller struct {
	client    client.Client // source cluster, cached: PVCs and ferry's pods
	reader    client.Reader // source cluster, uncached
	kube      kubernetes.Interface
	dynamic   dynamic.Interface
	apis      *kube.APIs
	namespace string // Velero's namespace (ferry-config, the target kubeconfig Secret)
	recorder  record.EventRecorder
	targets   *kube.Targets
	admission *admission
	now       func() time.Time
	// cleaned remembers terminal transfers whose objects are gone, so a resync does not list
	// both clusters again for each of them.
	cleaned sync.Map // PVC key -> transfer ID
}

// NewController builds the controller on a manager of the source cluster.
func NewController(mgr ctrl.Manager, namespace string) (*Controller, error) {
	source, err := kube.NewClients(mgr.GetConfig(), namespace)
	if err != nil {
		return nil, err
	}
	return &Controller{
		client:    mgr.GetClient(),
		reader:    mgr.GetAPIReader(),
		kube:      source.Kube,
		dynamic:   source.Dynamic,
		apis:      source.APIs,
		namespace: namespace,
		recorder:  mgr.GetEventRecorderFor("ferry-datamover"),
		targets:   &kube.Targets{Source: source},
		admission: newAdmission(),
		now:       time.Now,
	}, nil
}

// SetupWithManager watches PVCs with a transfer request or status, and ferry's client pods.
func (c *Controller) SetupWithManager(mgr ctrl.Manager, workers int) error {
	hasTransfer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, req := o.GetAnnotations()[keys.TransferID]
		_, st := o.GetAnnotations()[keys.TransferStatus]
		return req || st
	})
	podToPVC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		ns, name, ok := strings.Cut(o.GetAnnotations()[SourcePVCAnnotation], "/")
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("pvc-transfer").
		For(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(hasTransfer)).
		Watches(&corev1.Pod{}, podToPVC).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(c)
}

// Reconcile moves one PVC's transfer a step on.
func (c *Controller) Reconcile(ctx context.Context, r ctrl.Request) (ctrl.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("pvc", r.NamespacedName.String())
	ctx = logr.NewContext(ctx, log)
	var pvc corev1.PersistentVolumeClaim
	if err := c.client.Get(ctx, r.NamespacedName, &pvc); err != nil {
		if apierrors.IsNotFound(err) {
			c.admission.release(r.String())
			return ctrl.Result{}, c.cleanupGone(ctx, r.Namespace, r.Name)
		}
		return ctrl.Result{}, err
	}
	req, reqErr := transfer.ParseRequest(pvc.Namespace, pvc.Name, pvc.Annotations)
	st, stErr := transfer.ParseStatus(pvc.Annotations)
	if stErr != nil {
		log.Info("overwriting an unreadable transfer status", "error", stErr.Error())
		st = nil
	}
	if req == nil && reqErr == nil {
		// The request was removed by hand: nothing to do but tidy up.
		c.admission.release(r.String())
		return ctrl.Result{}, c.cleanup(ctx, &pvc, "")
	}
	if reqErr != nil {
		id := strings.TrimSpace(pvc.Annotations[keys.TransferID])
		if st != nil && st.ID == id && st.Phase.Terminal() {
			return ctrl.Result{}, nil
		}
		return c.finish(ctx, &pvc, nil, &transfer.Status{ID: id, Started: transfer.NewTime(c.now())}, transfer.PhaseFailed, reqErr.Error())
	}
	if st != nil && st.ID == req.ID && st.Phase.Terminal() {
		c.admission.release(r.String())
		if id, _ := c.cleaned.Load(r.String()); id == req.ID {
			return ctrl.Result{}, nil
		}
		if err := c.cleanup(ctx, &pvc, st.Target); err != nil {
			return ctrl.Result{}, err
		}
		c.cleaned.Store(r.String(), req.ID)
		return ctrl.Result{}, nil
	}
	c.cleaned.Delete(r.String())
	if st == nil || st.ID != req.ID {
		now := transfer.NewTime(c.now())
		st = &transfer.Status{ID: req.ID, Phase: transfer.PhasePending, Started: now, Since: now, Target: req.TargetNamespace + "/" + req.TargetName}
		if err := c.writeStatus(ctx, &pvc, st); err != nil {
			return ctrl.Result{}, err
		}
		c.recorder.Eventf(&pvc, corev1.EventTypeNormal, "TransferAccepted", "%s transfer %s to %s accepted", req.Type, req.ID, st.Target)
		return ctrl.Result{Requeue: true}, nil
	}
	if req.Cancel {
		return c.finish(ctx, &pvc, req, st, transfer.PhaseCancelled, "cancelled on request")
	}
	cfg, err := config.Load(ctx, c.kube, c.namespace)
	if err != nil {
		return c.finish(ctx, &pvc, req, st, transfer.PhaseFailed, err.Error())
	}

	t := &transferRun{c: c, pvc: &pvc, req: req, st: st, cfg: cfg, names: namesFor(pvc.Namespace, pvc.Name), log: log}
	res, err := t.step(ctx)
	if err == nil {
		return res, nil
	}
	if isPermanent(err) {
		return c.finish(ctx, &pvc, req, st, transfer.PhaseFailed, err.Error())
	}
	// Phase time limits count from the status's Since, so a restart does not reset them.
	if limit := timeoutOf(st.Phase, cfg); limit > 0 && st.Since != nil && c.now().Sub(st.Since.Time) > limit {
		return c.finish(ctx, &pvc, req, st, transfer.PhaseFailed, fmt.Sprintf("%s timed out after %s: %v", st.Phase, limit, err))
	}
	// Transient (the target unreachable for a moment, a conflict): say so and try again.
	log.Info("retrying", "phase", st.Phase, "error", err.Error())
	st.Message = "retrying: " + err.Error()
	if werr := c.writeStatus(ctx, &pvc, st); werr != nil {
		return ctrl.Result{}, werr
	}
	return ctrl.Result{RequeueAfter: pollInterval}, nil
}

func timeoutOf(p transfer.Phase, cfg *config.Config) time.Duration {
	switch p {
	case transfer.PhasePreparing:
		return cfg.PrepareTimeout
	case transfer.PhaseQuiescing:
		return cfg.QuiesceTimeout
	}
	return 0
}

// finish ends a transfer: the terminal status first (so Velero's operation can end), then the
// transfer objects on both clusters are deleted. A failed cleanup is retried by later
// reconciles. The target PVC, the target namespace and quiesced workloads are never touched.
func (c *Controller) finish(ctx context.Context, pvc *corev1.PersistentVolumeClaim, req *transfer.Request, st *transfer.Status, phase transfer.Phase, message string) (ctrl.Result, error) {
	now := transfer.NewTime(c.now())
	st.Phase, st.Message, st.Completed, st.Since = phase, message, now, now
	if err := c.writeStatus(ctx, pvc, st); err != nil {
		return ctrl.Result{}, err
	}
	key := pvc.Namespace + "/" + pvc.Name
	c.admission.release(key)
	typ := string(transfer.Stage)
	if req != nil {
		typ = string(req.Type)
	}
	transfersTotal.WithLabelValues(typ, string(phase)).Inc()
	if st.Started != nil {
		transferDuration.WithLabelValues(typ, string(phase)).Observe(now.Sub(st.Started.Time).Seconds())
	}
	switch phase {
	case transfer.PhaseCompleted:
		transferBytesTotal.WithLabelValues(typ).Add(float64(st.BytesSent))
		c.recorder.Eventf(pvc, corev1.EventTypeNormal, "TransferCompleted", "%s transfer %s to %s completed: %d files, %d bytes sent of %d", typ, st.ID, st.Target, st.FilesSent, st.BytesSent, st.BytesTotal)
	case transfer.PhaseCancelled:
		c.recorder.Eventf(pvc, corev1.EventTypeNormal, "TransferCancelled", "transfer %s cancelled", st.ID)
	default:
		c.recorder.Eventf(pvc, corev1.EventTypeWarning, "TransferFailed", "transfer %s failed: %s", st.ID, message)
	}
	logr.FromContextOrDiscard(ctx).Info("transfer ended", "id", st.ID, "phase", phase, "message", message)
	if err := c.cleanup(ctx, pvc, st.Target); err != nil {
		return ctrl.Result{RequeueAfter: pollInterval}, nil
	}
	c.cleaned.Store(key, st.ID)
	return ctrl.Result{}, nil
}

// writeStatus patches the status annotation when it changed (Updated is set only then).
func (c *Controller) writeStatus(ctx context.Context, pvc *corev1.PersistentVolumeClaim, st *transfer.Status) error {
	old, _ := transfer.ParseStatus(pvc.Annotations)
	if old != nil {
		prev := *old
		prev.Updated = st.Updated
		if prev.Encode() == st.Encode() {
			return nil
		}
	}
	st.Updated = transfer.NewTime(c.now())
	value := st.Encode()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.TransferStatus: value}}})
	if err != nil {
		return err
	}
	if err := c.client.Patch(ctx, pvc, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("writing the transfer status on PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	if pvc.Annotations == nil {
		pvc.Annotations = map[string]string{}
	}
	pvc.Annotations[keys.TransferStatus] = value
	return nil
}

// activeTransfers lists the PVCs whose transfer holds a slot, from the cache.
func (c *Controller) activeTransfers(ctx context.Context) (map[string]bool, error) {
	var list corev1.PersistentVolumeClaimList
	if err := c.client.List(ctx, &list); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		st, _ := transfer.ParseStatus(p.Annotations)
		if st == nil || st.Phase.Terminal() || st.Phase == transfer.PhasePending {
			continue
		}
		if p.Annotations[keys.TransferID] == st.ID {
			out[p.Namespace+"/"+p.Name] = true
		}
	}
	transfersActive.Set(float64(len(out)))
	return out, nil
}
