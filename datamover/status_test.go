package datamover

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ferry-dev/ferry/internal/transfer"
)

func TestApplyEvent(t *testing.T) {
	st := &transfer.Status{ID: "t1", Phase: transfer.PhaseTransferring}
	applyEvent(st, Event{Type: EventProgress, Attempt: 1, BytesDone: 10, BytesTotal: 100, Percent: 10, RateBytesPerSecond: 5, FilesTotal: 3}, 1)
	assert.Equal(t, int64(10), st.BytesDone)
	assert.Equal(t, 1, st.Attempts)
	applyEvent(st, Event{Type: EventRetry, Attempt: 1, Error: "connection reset by peer", BackoffSeconds: 2}, 1)
	assert.Contains(t, st.Message, "connection reset by peer")
	// a second client pod's first attempt is the transfer's third at least
	applyEvent(st, Event{Type: EventProgress, Attempt: 2, BytesDone: 50, BytesTotal: 100, Percent: 50}, 2)
	assert.Equal(t, 3, st.Attempts)
	assert.Empty(t, st.Message)
	applyEvent(st, Event{Type: EventDone, BytesTotal: 100, BytesSent: 40, Files: 3, FilesTransferred: 1, Attempts: 2, Warnings: 1}, 2)
	assert.Equal(t, int64(100), st.BytesDone)
	assert.Equal(t, int64(40), st.BytesSent)
	assert.Equal(t, int64(1), st.FilesSent)
	assert.Equal(t, float64(100), st.Percent)
	assert.Equal(t, 1, st.Warnings)
	assert.Zero(t, st.RateBPS)
}
