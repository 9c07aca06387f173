package sidecar

import (
	"errors"
	"net"
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
