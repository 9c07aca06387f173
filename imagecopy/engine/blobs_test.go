package engine

import (
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"go.podman.io/image/v5/types"
)

func TestBlobTally(t *testing.T) {
	ev := func(e types.ProgressEvent, d string, offset uint64) types.ProgressProperties {
		return types.ProgressProperties{Event: e, Artifact: types.BlobInfo{Digest: digest.Digest(d), Size: 100}, Offset: offset}
	}
	tests := []struct {
		name        string
		events      []types.ProgressProperties
		sent, skip  int
		wantedBytes int64
	}{
		{"uploaded layers", []types.ProgressProperties{ev(types.ProgressEventNewArtifact, "sha256:a", 0), ev(types.ProgressEventRead, "sha256:a", 50), ev(types.ProgressEventDone, "sha256:a", 100)}, 1, 0, 100},
		{"layer found before reading", []types.ProgressProperties{ev(types.ProgressEventSkipped, "sha256:a", 0)}, 0, 1, 0},
		{"config found by the upload path: done after reading nothing", []types.ProgressProperties{ev(types.ProgressEventNewArtifact, "sha256:c", 0), ev(types.ProgressEventDone, "sha256:c", 0)}, 0, 1, 0},
		{"uploaded in a failed attempt, found in the retry: sent once", []types.ProgressProperties{ev(types.ProgressEventDone, "sha256:a", 100), ev(types.ProgressEventSkipped, "sha256:a", 0)}, 1, 0, 100},
		{"skipped in a first attempt, then uploaded", []types.ProgressProperties{ev(types.ProgressEventSkipped, "sha256:a", 0), ev(types.ProgressEventDone, "sha256:a", 100)}, 1, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := newBlobTally()
			ch := make(chan types.ProgressProperties)
			done := tally.consume(ch)
			for _, e := range tt.events {
				ch <- e
			}
			close(ch)
			<-done
			sent, skipped, bytes := tally.result()
			assert.Equal(t, tt.sent, sent)
			assert.Equal(t, tt.skip, skipped)
			assert.Equal(t, tt.wantedBytes, bytes)
		})
	}
}
