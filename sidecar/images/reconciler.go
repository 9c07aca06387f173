// Package images is the sidecar's image-stream copy reconciler: for each ImageStream that
// carries a copy request (written by ferry's image-stream backup action, or by hand) it copies
// the stream's locally pushed images straight from the source cluster's registry to the
// target's, writing its progress back on the stream, where the action's Progress() reads it.
//
// It imports the copy engine, so it needs the build tag containers_image_openpgp (the Makefile
// sets it).
package images

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/ferry-dev/ferry/imagecopy/engine"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/sidecar"
)

var imageStreams = kube.ImageGV.WithResource("imagestreams")

// Reconciler copies the images of ImageStreams that carry a copy request. Everything it knows is
// on the stream (request and status annotations): it can stop at any moment, and a restart
// copies again what was not finished (blobs already in the target are skipped).
type Reconciler struct {
	*sidecar.Env
	// Copier copies one image.
	Copier *engine.Copier
	// Progress is how often progress is written while images are copied (sidecar.Poll).
	Progress time.Duration
}

// Setup adds the image-stream copy reconciler to the sidecar's manager. On a cluster without
// image streams (plain Kubernetes) it adds nothing.
func Setup(mgr ctrl.Manager, env *sidecar.Env, workers int) error {
	copier, err := engine.New(engine.Options{Log: mgr.GetLogger().WithName("imagecopy")})
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return copier.Close()
	})); err != nil {
		return err
	}
	r := &Reconciler{Env: env, Copier: copier, Progress: sidecar.Poll}
	return r.SetupWithManager(mgr, workers)
}

// SetupWithManager watches ImageStreams that carry a copy request.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	served, err := r.Source.APIs.Has(kube.ImageGV, "imagestreams")
	if err != nil {
		return err
	}
	if !served {
		mgr.GetLogger().Info("this cluster serves no image streams: image copies are off")
		return nil
	}
	if workers < 1 {
		workers = 2
	}
	stream := &unstructured.Unstructured{}
	stream.SetGroupVersionKind(kube.ImageGV.WithKind("ImageStream"))
	return ctrl.NewControllerManagedBy(mgr).
		Named("imagestream-copy").
		For(stream, builder.WithPredicates(requestChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// requestChanged lets through streams that carry a request when they appear (also at every
// start, so an unfinished copy resumes) and when the request itself changes: a new ID, a cancel,
// a new target. The sidecar's own status writes do not wake it up again.
var requestChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return hasRequest(e.Object) },
	UpdateFunc: func(e event.UpdateEvent) bool {
		if !hasRequest(e.ObjectNew) {
			return false
		}
		o, n := e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()
		for _, k := range []string{keys.ImageCopyID, keys.ImageCopyCancel, keys.ImageCopyTarget} {
			if o[k] != n[k] {
				return true
			}
		}
		return false
	},
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(e event.GenericEvent) bool { return hasRequest(e.Object) },
}

func hasRequest(o client.Object) bool {
	_, ok := o.GetAnnotations()[keys.ImageCopyID]
	return ok
}

// Reconcile copies one image stream's images, or finishes its request.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("imagestream", req.String())
	ctx = logr.NewContext(ctx, log)
	streams := r.Source.Dynamic.Resource(imageStreams).Namespace(req.Namespace)
	u, err := streams.Get(ctx, req.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	ann := u.GetAnnotations()
	creq, reqErr := operation.ParseImageCopyRequest(req.Namespace, req.Name, ann)
	st, stErr := operation.ParseImageCopyStatus(ann)
	if stErr != nil {
		log.Info("overwriting an unreadable image copy status", "error", stErr.Error())
		st = nil
	}
	id := strings.TrimSpace(ann[keys.ImageCopyID])
	if creq == nil && reqErr == nil {
		return ctrl.Result{}, nil
	}
	if st != nil && st.ID == id && st.Phase.Terminal() {
		if st.Phase == operation.PhaseCompleted && st.Completed != nil { // a restarted data mover shows it again
			copyLastSuccess.WithLabelValues(req.Namespace, req.Name).Set(float64(st.Completed.Unix()))
		}
		return ctrl.Result{}, nil
	}
	fresh := st == nil || st.ID != id
	if fresh {
		now := r.now()
		st = &operation.ImageCopyStatus{Header: operation.Header{ID: id, Phase: operation.PhasePending, Started: now, Since: now}}
	}
	s := &statusWriter{r: r, streams: streams, stream: u, st: st}
	// Nothing happens for a request Velero's plugins or an admin did not sign.
	refusal, err := r.Authenticate(ctx, operation.ImageCopyKeys, u, fresh)
	if err != nil {
		log.Info("cannot check the request's signature yet", "error", err.Error())
		return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
	}
	if refusal != nil {
		return ctrl.Result{}, s.finish(ctx, operation.PhaseRefused, refusal.Error())
	}
	if reqErr != nil {
		return ctrl.Result{}, s.finish(ctx, operation.PhaseFailed, reqErr.Error())
	}
	if creq.Cancel {
		return ctrl.Result{}, s.finish(ctx, operation.PhaseCancelled, "cancelled on request")
	}
	if creq.Backup != "" {
		gone, err := r.BackupGone(ctx, creq.Backup, types.UID(creq.ID))
		if err != nil {
			log.Info("cannot read the request's Backup yet", "error", err.Error())
		} else if gone != "" {
			return ctrl.Result{}, s.finish(ctx, operation.PhaseCancelled, "cancelled: "+gone)
		}
	}

	cfg, err := r.Config(ctx)
	var job *job
	if err == nil {
		job, err = r.prepare(ctx, cfg, u, creq)
	}
	if err != nil {
		if sidecar.IsRefusal(err) {
			return ctrl.Result{}, s.finish(ctx, operation.PhaseRefused, err.Error())
		}
		if r.Refusals.Permanent("imagestream/"+u.GetNamespace()+"/"+u.GetName(), err, r.Clock.Now()) {
			return ctrl.Result{}, s.finish(ctx, operation.PhaseFailed, err.Error())
		}
		if cfg != nil && sidecar.Expired(&st.Header, cfg.PrepareTimeout, r.Clock.Now()) {
			return ctrl.Result{}, s.finish(ctx, operation.PhaseFailed, fmt.Sprintf("%s timed out after %s: %v", st.Phase, cfg.PrepareTimeout, err))
		}
		log.Info("waiting to retry", "error", err.Error())
		st.Message = "retrying: " + err.Error()
		if werr := s.write(ctx); werr != nil {
			return r.stopped(ctx, s, werr)
		}
		return ctrl.Result{RequeueAfter: sidecar.Poll}, nil
	}
	return r.copy(ctx, s, job)
}

func (r *Reconciler) now() *operation.Time { return operation.NewTime(r.Clock.Now()) }

// statusWriter writes a stream's status annotation and learns from the answer whether the
// request was cancelled or replaced meanwhile.
type statusWriter struct {
	r       *Reconciler
	streams dynamic.ResourceInterface
	stream  *unstructured.Unstructured
	st      *operation.ImageCopyStatus
}

// errStopped says the request was cancelled, replaced by a newer one, or its stream deleted.
var errStopped = errors.New("the copy request was cancelled, replaced or deleted")

// write writes the status if it changed, and returns errStopped when the stream no longer
// wants this copy.
func (s *statusWriter) write(ctx context.Context) error {
	err := sidecar.WriteStatus(ctx, s.r.Clock, s.stream, keys.ImageCopyStatus, s.st, func(ctx context.Context, patch []byte) error {
		u, err := s.streams.Patch(ctx, s.stream.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			s.stream = u
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return errStopped
	}
	if err != nil {
		return err
	}
	return s.stillWanted()
}

// refresh reads the stream again, to notice a cancel or a newer request while nothing changed
// to write.
func (s *statusWriter) refresh(ctx context.Context) error {
	u, err := s.streams.Get(ctx, s.stream.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return errStopped
	}
	if err != nil {
		return err
	}
	s.stream = u
	return s.stillWanted()
}

func (s *statusWriter) stillWanted() error {
	ann := s.stream.GetAnnotations()
	if ann[keys.ImageCopyID] != s.st.ID || ann[keys.ImageCopyCancel] == s.st.ID {
		return errStopped
	}
	return nil
}

// finish writes a terminal status.
func (s *statusWriter) finish(ctx context.Context, phase operation.Phase, message string) error {
	now := s.r.now()
	s.st.Phase, s.st.Message, s.st.Completed, s.st.Since = phase, message, now, now
	logr.FromContextOrDiscard(ctx).Info("image copy ended", "id", s.st.ID, "phase", phase, "message", message)
	if err := s.write(ctx); err != nil && !errors.Is(err, errStopped) {
		return err
	}
	recordEnd(s.stream.GetNamespace(), s.stream.GetName(), s.st)
	kind, reason := corev1.EventTypeWarning, "ImageCopy"+string(phase)
	if phase == operation.PhaseCompleted {
		kind = corev1.EventTypeNormal
	}
	s.r.Recorder.Eventf(s.stream, kind, reason, "image copy %s %s: %s", s.st.ID, strings.ToLower(string(phase)), message)
	return nil
}

// decodeStream converts the unstructured stream.
func decodeStream(u *unstructured.Unstructured) (*imagev1.ImageStream, error) {
	var is imagev1.ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return nil, sidecar.Permanent(fmt.Errorf("ImageStream %s/%s cannot be read: %v", u.GetNamespace(), u.GetName(), err))
	}
	return &is, nil
}
