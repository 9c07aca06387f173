package operation

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/keys"
)

func TestTransferStatusRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s := &TransferStatus{Header: Header{ID: "u", Phase: PhaseTransferring, Started: NewTime(now)}, BytesDone: 10, BytesTotal: 100, Percent: 10, Attempts: 2}
	got, err := ParseTransferStatus(map[string]string{keys.TransferStatus: Encode(s)})
	require.NoError(t, err)
	assert.Equal(t, s, got)
	assert.Less(t, len(Encode(s)), 300, "the status must stay small")
	assert.True(t, strings.HasPrefix(Encode(s), `{"id":"u","phase":"Transferring"`), "the header's fields sit at the top level: %s", Encode(s))

	none, err := ParseTransferStatus(nil)
	require.NoError(t, err)
	assert.Nil(t, none)

	_, err = ParseTransferStatus(map[string]string{keys.TransferStatus: "{not json"})
	assert.ErrorContains(t, err, keys.TransferStatus)
	_, err = ParseTransferStatus(map[string]string{keys.TransferStatus: `{"started":"yesterday"}`})
	assert.Error(t, err)
}

func TestImageCopyStatusRoundTripAndBounds(t *testing.T) {
	st := &ImageCopyStatus{Header: Header{ID: "uid-1", Phase: PhaseFailed}, Images: 30}
	long := "copying a to b: " + strings.Repeat("x", 1000) + ": manifest unknown (not found)"
	for i := 0; i < 25; i++ {
		st.AddError("v1", "sha256:aaaa", long)
	}
	assert.Equal(t, 25, st.FailedImages)
	assert.Len(t, st.Errors, maxListedErrors)
	assert.True(t, strings.HasPrefix(st.Errors[0].Error, "copying a to b: "), "the start says what was copied")
	assert.True(t, strings.HasSuffix(st.Errors[0].Error, ": manifest unknown (not found)"), "the end keeps the cause")
	assert.LessOrEqual(t, len(Encode(st)), 8192, "the annotation must stay small")
	assert.Contains(t, st.ErrorSummary(), "25 of 30 images not copied")
	assert.Contains(t, st.ErrorSummary(), "and 15 more")

	got, err := ParseImageCopyStatus(map[string]string{keys.ImageCopyStatus: Encode(st)})
	require.NoError(t, err)
	assert.Equal(t, st, got)

	// Zero blob counts are written out: "sent nothing" is an answer people look for.
	assert.Contains(t, Encode(&ImageCopyStatus{Header: Header{ID: "x", Phase: PhaseCompleted}}), `"blobsSent":0`)

	none, err := ParseImageCopyStatus(map[string]string{})
	require.NoError(t, err)
	assert.Nil(t, none)
	_, err = ParseImageCopyStatus(map[string]string{keys.ImageCopyStatus: "{"})
	assert.ErrorContains(t, err, keys.ImageCopyStatus)
}

func TestTransferETA(t *testing.T) {
	copying := func(done, total, rate int64) *TransferStatus {
		return &TransferStatus{Header: Header{Phase: PhaseTransferring}, BytesDone: done, BytesTotal: total, RateBPS: rate}
	}
	tests := []struct {
		name string
		st   *TransferStatus
		want time.Duration
	}{
		{"at the current rate, rounded up", copying(10, 101, 10), 10 * time.Second},
		{"no rate yet", copying(10, 100, 0), 0},
		{"no total yet", copying(10, 0, 10), 0},
		{"done", copying(100, 100, 10), 0},
		{"not copying", &TransferStatus{Header: Header{Phase: PhasePreparing}, BytesTotal: 100, RateBPS: 10}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.st.ETA())
		})
	}
}
