package imagecopy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/keys"
)

func TestStatusRoundTripAndBounds(t *testing.T) {
	st := &Status{ID: "uid-1", Phase: PhaseFailed, Images: 30}
	long := "copying a to b: " + strings.Repeat("x", 1000) + ": manifest unknown (not found)"
	for i := 0; i < 25; i++ {
		st.AddError("v1", dA, long)
	}
	assert.Equal(t, 25, st.FailedImages)
	assert.Len(t, st.Errors, maxListedErrors)
	assert.True(t, strings.HasPrefix(st.Errors[0].Error, "copying a to b: "), "the start says what was copied")
	assert.True(t, strings.HasSuffix(st.Errors[0].Error, ": manifest unknown (not found)"), "the end keeps the cause")
	assert.LessOrEqual(t, len(st.Encode()), 8192, "the annotation must stay small")
	assert.Contains(t, st.ErrorSummary(), "25 of 30 images not copied")
	assert.Contains(t, st.ErrorSummary(), "and 15 more")

	got, err := ParseStatus(map[string]string{keys.ImageCopyStatus: st.Encode()})
	require.NoError(t, err)
	assert.Equal(t, st, got)
	assert.True(t, got.Phase.Terminal())

	// Zero blob counts are written out: "sent nothing" is an answer people look for.
	assert.Contains(t, (&Status{ID: "x", Phase: PhaseCompleted}).Encode(), `"blobsSent":0`)

	none, err := ParseStatus(map[string]string{})
	require.NoError(t, err)
	assert.Nil(t, none)
	_, err = ParseStatus(map[string]string{keys.ImageCopyStatus: "{"})
	assert.ErrorContains(t, err, keys.ImageCopyStatus)
}
