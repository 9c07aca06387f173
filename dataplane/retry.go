package dataplane

import (
	"context"
	"errors"
	"time"
)

// Retry defaults of `send`: 8 attempts with waits of 2, 4, 8, 16, 32, 60, 60 seconds ride out
// a restarting server pod or a flapping route (about three minutes in all).
const (
	DefaultMaxAttempts = 8
	DefaultBackoff     = 2 * time.Second
	DefaultMaxBackoff  = time.Minute
)

// backoff is an exponential backoff: initial, doubling, capped at max.
type backoff struct {
	initial, max time.Duration
}

// delay is the wait after failed attempt number attempt (1-based).
func (b backoff) delay(attempt int) time.Duration {
	d := b.initial
	for i := 1; i < attempt && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// notRetryable marks a failure that another attempt cannot fix (bad input, unreadable
// source, refused certificate, usage error reported by rsync).
type notRetryable struct{ error }

func (e notRetryable) Unwrap() error { return e.error }

// retryable reports whether a failed attempt is worth repeating.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var p notRetryable
	if errors.As(err, &p) {
		return false
	}
	var r *RsyncError
	if errors.As(err, &r) {
		return r.Transient()
	}
	var v *VerifyError
	if errors.As(err, &v) {
		// The next attempt copies by content, which size and mtime may have hidden; after such
		// a copy, another would find the same.
		return !v.ContentCopy
	}
	// Anything else (a local I/O hiccup writing our own work files) is rare; one more try is
	// cheap and never harmful, since rsync only moves what is missing.
	return true
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
