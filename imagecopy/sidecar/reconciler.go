// Package sidecar is the ferry-datamover side of image copies: a controller-runtime reconciler for
// ImageStreams that carry a copy request (written by ferry's image-stream backup action, or by
// hand). For each it copies the stream's locally pushed images straight from the source
// cluster's registry to the target's, writing its progress back on the stream, where the backup
// action's Progress() reads it.
//
// It imports the copy engine, so it needs the build tag containers_image_openpgp (the Makefile
// sets it).
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	imagev1 "github.com/openshift/api/image/v1"
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

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/imagecopy/engine"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/transfer"
)

var imageStreams = kube.ImageGV.WithResource("imagestreams")

// Defaults of a Reconciler.
const (
	// DefaultStatusInterval is how often progress is written while images are copied.
	DefaultStatusInterval = 5 * time.Second
	// retryInterval is how long a request waits after a transient problem (an API server or the
	// target cluster unreachable) before it is tried again.
	retryInterval = 30 * time.Second
)

// Reconciler copies the images of ImageStreams that carry a copy request. Everything it knows is
// on the stream (request and status annotations): it can stop at any moment, and a restart
// copies again what was not finished (blobs already in the target are skipped).
type Reconciler struct {
	// Source is the cluster the sidecar runs in; Source.Namespace is Velero's namespace, where
	// ferry-config and the Secrets it names live.
	Source *kube.Clients
	// Target returns the target cluster's clients (with their rest.Config, whose token is the
	// default push credential). Nil reads the kubeconfig Secret named by ferry-config.
	Target func(ctx context.Context, cfg *config.Config) (*kube.Clients, error)
	// Copier copies one image.
	Copier *engine.Copier
	// StatusInterval is how often progress is written; 0 means DefaultStatusInterval.
	StatusInterval time.Duration

	targets     *kube.Targets
	targetsOnce sync.Once
}

// Setup adds the image-stream copy controller to a manager of the source cluster: the sidecar's
// one line of wiring. On a cluster without image streams (plain Kubernetes) it adds nothing.
func Setup(mgr ctrl.Manager, namespace string, workers int) error {
	clients, err := kube.NewClients(mgr.GetConfig(), namespace)
	if err != nil {
		return err
	}
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
	r := &Reconciler{Source: clients, Copier: copier}
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
	creq, reqErr := imagecopy.ParseRequest(req.Namespace, req.Name, ann)
	st, stErr := imagecopy.ParseStatus(ann)
	if stErr != nil {
		log.Info("overwriting an unreadable image copy status", "error", stErr.Error())
		st = nil
	}
	id := strings.TrimSpace(ann[keys.ImageCopyID])
	if creq == nil && reqErr == nil {
		return ctrl.Result{}, nil
	}
	if st != nil && st.ID == id && st.Phase.Terminal() {
		return ctrl.Result{}, nil
	}
	if st == nil || st.ID != id {
		st = &imagecopy.Status{ID: id, Phase: imagecopy.PhasePending, Started: transfer.NewTime(time.Now())}
	}
	s := &statusWriter{streams: streams, name: req.Name, st: st}
	if reqErr != nil {
		return ctrl.Result{}, s.finish(ctx, imagecopy.PhaseFailed, reqErr.Error())
	}
	if creq.Cancel {
		return ctrl.Result{}, s.finish(ctx, imagecopy.PhaseCancelled, "cancelled on request")
	}

	job, err := r.prepare(ctx, u, creq)
	if err != nil {
		if isPermanent(err) {
			return ctrl.Result{}, s.finish(ctx, imagecopy.PhaseFailed, err.Error())
		}
		log.Info("waiting to retry", "error", err.Error())
		st.Message = "retrying: " + err.Error()
		if werr := s.write(ctx); werr != nil {
			return r.stopped(ctx, s, werr)
		}
		return ctrl.Result{RequeueAfter: retryInterval}, nil
	}
	return r.copy(ctx, s, job)
}

// statusWriter writes a stream's status annotation and learns from the answer whether the
// request was cancelled or replaced meanwhile.
type statusWriter struct {
	streams dynamic.ResourceInterface
	name    string
	st      *imagecopy.Status
}

// errStopped says the request was cancelled, replaced by a newer one, or its stream deleted.
var errStopped = errors.New("the copy request was cancelled, replaced or deleted")

// write patches the status and returns errStopped when the stream no longer wants this copy.
func (s *statusWriter) write(ctx context.Context) error {
	s.st.Updated = transfer.NewTime(time.Now())
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.ImageCopyStatus: s.st.Encode()}}})
	if err != nil {
		return err
	}
	u, err := s.streams.Patch(ctx, s.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return errStopped
	}
	if err != nil {
		return fmt.Errorf("writing the image copy status on ImageStream %s: %w", s.name, err)
	}
	ann := u.GetAnnotations()
	if ann[keys.ImageCopyID] != s.st.ID || ann[keys.ImageCopyCancel] == s.st.ID {
		return errStopped
	}
	return nil
}

// finish writes a terminal status.
func (s *statusWriter) finish(ctx context.Context, phase imagecopy.Phase, message string) error {
	s.st.Phase, s.st.Message, s.st.Completed = phase, message, transfer.NewTime(time.Now())
	logr.FromContextOrDiscard(ctx).Info("image copy ended", "id", s.st.ID, "phase", phase, "message", message)
	if err := s.write(ctx); err != nil && !errors.Is(err, errStopped) {
		return err
	}
	return nil
}

// decodeStream converts the unstructured stream.
func decodeStream(u *unstructured.Unstructured) (*imagev1.ImageStream, error) {
	var is imagev1.ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return nil, permanent(fmt.Errorf("ImageStream %s/%s cannot be read: %v", u.GetNamespace(), u.GetName(), err))
	}
	return &is, nil
}

// permanentError ends a request at once; other errors are retried.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool { return errors.As(err, &permanentError{}) }
