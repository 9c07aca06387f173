package dataplane

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoff(t *testing.T) {
	b := backoff{initial: 2 * time.Second, max: time.Minute}
	var got []time.Duration
	for attempt := 1; attempt <= 8; attempt++ {
		got = append(got, b.delay(attempt))
	}
	assert.Equal(t, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second,
		time.Minute, time.Minute, time.Minute}, got)
	assert.Equal(t, 50*time.Millisecond, backoff{initial: 50 * time.Millisecond, max: time.Second}.delay(1))
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"cut connection", &RsyncError{Code: 12}, true},
		{"wrapped timeout", fmt.Errorf("stream 2: %w", &RsyncError{Code: 30}), true},
		{"usage", &RsyncError{Code: 1}, false},
		{"not supported", &RsyncError{Code: 4}, false},
		{"refused certificate", &RsyncError{Code: 12, untrusted: true}, false},
		{"bad input", notRetryable{errors.New("source is not a directory")}, false},
		{"cancelled", context.Canceled, false},
		{"cancelled wrapped", fmt.Errorf("interrupted: %w", context.Canceled), false},
		{"local hiccup", errors.New("write /tmp/x: interrupted system call"), true},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, retryable(tc.err), tc.name)
	}
}

func TestSleepCtx(t *testing.T) {
	assert.NoError(t, sleepCtx(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, sleepCtx(ctx, time.Hour), context.Canceled)
}
