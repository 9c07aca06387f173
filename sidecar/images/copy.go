package images

import (
	"context"
	"errors"
	"fmt"
	corev1 "k8s.io/api/core/v1"
	"sync"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/internal/operation"
)

// copy runs a prepared job: the images one after the other (each image's blobs in parallel),
// progress written every StatusInterval, a cancel or a newer request noticed at each write. A
// failed image is recorded and the others still go; the stream ends Failed if any failed.
func (r *Reconciler) copy(ctx context.Context, s *statusWriter, j *job) (ctrl.Result, error) {
	log := logr.FromContextOrDiscard(ctx)
	st := s.st
	now := r.now()
	*st = operation.ImageCopyStatus{Header: operation.Header{ID: st.ID, Phase: operation.PhaseCopying, Started: st.Started, Since: now},
		Target: j.repo, Images: len(j.images) + len(j.problems)}
	for _, p := range j.problems {
		st.AddError(p.Tag, p.Image, p.Error)
		st.ImagesDone++
	}
	if len(j.images) == 0 {
		return r.end(ctx, s)
	}
	if err := s.write(ctx); err != nil {
		return r.stopped(ctx, s, err)
	}
	r.Recorder.Eventf(s.stream, corev1.EventTypeNormal, "ImageCopyStarted", "copying %d images to %s", len(j.images), j.repo)
	var from []string
	for _, a := range j.sources {
		from = append(from, a.String())
	}
	// Access.String says where credentials come from and whether TLS verification is off; it
	// never holds a secret.
	log.Info("copying images", "images", len(j.images), "from", from, "to", j.target.String(), "repository", j.repo)

	copyCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	stop := make(chan struct{})
	written := make(chan struct{})
	go func() {
		defer close(written)
		t := time.NewTicker(r.Progress)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				err := s.write(ctx)
				if err == nil {
					// An unchanged status is not written: look for a cancel or a newer request.
					err = s.refresh(ctx)
				}
				mu.Unlock()
				if errors.Is(err, errStopped) {
					cancel(errStopped)
					return
				}
				if err != nil {
					log.Info("could not write progress; trying again at the next tick", "error", err.Error())
				}
			}
		}
	}()

	for _, im := range j.images {
		if copyCtx.Err() != nil {
			break
		}
		dst := im.Destination(j.repo)
		stats, err := r.Copier.Copy(copyCtx, im.Source, j.sources[registryOf(im.Source)], dst, j.target)
		mu.Lock()
		st.ImagesDone++
		st.BlobsSent += stats.BlobsSent
		st.BlobsSkipped += stats.BlobsSkipped
		st.BytesSent += stats.BytesSent
		st.Retries += stats.Retries
		if err != nil && copyCtx.Err() == nil {
			st.AddError(im.Tag, im.Digest, err.Error())
			log.Info("image not copied", "tag", im.Tag, "digest", im.Digest, "error", err.Error())
		} else if err == nil {
			log.V(1).Info("image copied", "tag", im.Tag, "destination", dst, "blobsSent", stats.BlobsSent, "blobsSkipped", stats.BlobsSkipped)
		}
		mu.Unlock()
	}
	close(stop)
	<-written

	if cause := context.Cause(copyCtx); errors.Is(cause, errStopped) {
		return r.stopped(ctx, s, cause)
	}
	if ctx.Err() != nil {
		// The sidecar is stopping: the status stays as it is and the next leader copies again.
		return ctrl.Result{}, ctx.Err()
	}
	return r.end(ctx, s)
}

// end writes the terminal status of a finished copy.
func (r *Reconciler) end(ctx context.Context, s *statusWriter) (ctrl.Result, error) {
	st := s.st
	if st.FailedImages > 0 {
		return ctrl.Result{}, s.finish(ctx, operation.PhaseFailed, st.ErrorSummary())
	}
	msg := fmt.Sprintf("copied %d images to %s: %d blobs sent (%d bytes), %d already there", st.Images, st.Target, st.BlobsSent, st.BytesSent, st.BlobsSkipped)
	if st.Images == 0 {
		msg = "no locally pushed images to copy"
	}
	return ctrl.Result{}, s.finish(ctx, operation.PhaseCompleted, msg)
}

// stopped ends a copy whose request went away: cancelled (Cancelled is written), replaced by a
// newer request or its stream deleted (the status write is then a no-op or lands on a stream the
// newer request will overwrite).
func (r *Reconciler) stopped(ctx context.Context, s *statusWriter, err error) (ctrl.Result, error) {
	if !errors.Is(err, errStopped) {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, s.finish(ctx, operation.PhaseCancelled, "cancelled on request (or replaced by a newer request)")
}
