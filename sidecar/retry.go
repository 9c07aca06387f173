package sidecar

import (
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/operation"
)

// Poll is how soon an operation is looked at again: while it waits for something (a pod, an
// address), and after a transient failure.
const Poll = 5 * time.Second

// permanentError fails an operation at once.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks err as one that retrying cannot fix.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether retrying err is pointless: it was marked Permanent, it is a
// mistake in ferry's configuration, or the API server refused the request as such (invalid,
// forbidden, malformed). Everything else — an API server or registry unreachable or busy, a
// conflict, something not there yet — is retried until the phase's time limit.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.As(err, &permanentError{}) || IsRefusal(err) || config.IsError(err) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	return apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) ||
		apierrors.IsMethodNotSupported(err) || apierrors.IsNotAcceptable(err) || apierrors.IsUnsupportedMediaType(err) ||
		apierrors.IsRequestEntityTooLargeError(err)
}

// ForbiddenGrace is how long an authorization refusal (RBAC's 403) is retried before it counts
// as permanent: a kube-apiserver that has just started refuses every request until its RBAC
// caches are filled (seen on the stack: the target's API server restarted mid-transfer).
const ForbiddenGrace = time.Minute

// IsAuthorizationDenial reports whether err is the authorizer's 403 ("User … cannot list
// resource …"), as opposed to admission's (Pod Security, policies), which no wait changes.
func IsAuthorizationDenial(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), " cannot ")
}

// Refusals remembers, per operation, when an unbroken run of authorization refusals began.
// The zero value is ready to use.
type Refusals struct{ runs sync.Map } // key -> refusalRun

type refusalRun struct{ first, last time.Time }

// Permanent is IsPermanent, except that an authorization refusal counts only once such
// refusals of operation key have gone on for ForbiddenGrace (none for ForbiddenGrace: a new run).
func (r *Refusals) Permanent(key string, err error, now time.Time) bool {
	if !IsAuthorizationDenial(err) {
		r.runs.Delete(key)
		return IsPermanent(err)
	}
	run := refusalRun{first: now, last: now}
	if v, ok := r.runs.Load(key); ok {
		if prev := v.(refusalRun); now.Sub(prev.last) < ForbiddenGrace {
			run.first = prev.first
		}
	}
	r.runs.Store(key, run)
	return now.Sub(run.first) >= ForbiddenGrace
}

// Expired reports whether the phase of h has run longer than limit (0: no limit). It counts
// from h.Since, which is in the status, so a restarted sidecar keeps the count.
func Expired(h *operation.Header, limit time.Duration, now time.Time) bool {
	return limit > 0 && h.Since != nil && now.Sub(h.Since.Time) > limit
}

// refusalError: ferry will not do what the request asks (it would overwrite data ferry did not
// write, or reach what the request may not). The operation ends Refused, with the reason.
type refusalError struct{ error }

func (e refusalError) Unwrap() error { return e.error }

// Refusal marks err as a refusal.
func Refusal(err error) error { return refusalError{err} }

// IsRefusal reports whether err is, or wraps, a refusal.
func IsRefusal(err error) bool { return errors.As(err, &refusalError{}) }
