package engine

import (
	"sync"

	"go.podman.io/image/v5/types"
)

// blobTally counts blobs from containers/image's progress events across the attempts of one
// copy. A blob the destination already had shows up either as a "skipped" event (layers it found
// before reading them) or as a "done" event after zero bytes were read (the config blob, whose
// upload path checks for it first). Counting by digest keeps a blob uploaded in a failed attempt
// and found again in the retry counted once, as sent.
type blobTally struct {
	mu      sync.Mutex
	sent    map[string]int64 // digest → bytes
	skipped map[string]bool
}

func newBlobTally() *blobTally {
	return &blobTally{sent: map[string]int64{}, skipped: map[string]bool{}}
}

// consume reads events until the channel is closed; done is closed afterwards.
func (t *blobTally) consume(events <-chan types.ProgressProperties) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		for e := range events {
			t.record(e)
		}
	}()
	return done
}

func (t *blobTally) record(e types.ProgressProperties) {
	d := e.Artifact.Digest.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case e.Event == types.ProgressEventSkipped, e.Event == types.ProgressEventDone && e.Offset == 0:
		if _, ok := t.sent[d]; !ok {
			t.skipped[d] = true
		}
	case e.Event == types.ProgressEventDone:
		t.sent[d] = int64(e.Offset)
		delete(t.skipped, d)
	}
}

func (t *blobTally) result() (sent, skipped int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.sent {
		bytes += n
	}
	return len(t.sent), len(t.skipped), bytes
}
