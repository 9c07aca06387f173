//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/test/demo"
	"github.com/ferry-dev/ferry/test/stack"
)

// TestDemo runs `make demo`'s migration (the same code) on the shared stack, so the demo cannot
// rot: every check of its report must hold, and each stage must have moved what it should.
// Its ferry-config is the base one (demo.FerryConfig), so it runs beside the other tests.
func TestDemo(t *testing.T) {
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	var out bytes.Buffer
	report, err := demo.Run(ctx, s, &out)
	t.Logf("demo output:\n%s", out.String())
	t.Cleanup(func() {
		for _, c := range s.Clusters() {
			_ = c.DeleteNamespace(context.Background(), report.Namespace)
		}
	})
	require.NoError(t, err)
	assert.True(t, report.OK())
	require.Len(t, report.Uploaded, 2)
	assert.Less(t, report.BytesSent["stage-2"], report.Uploaded[1]+(1<<20), "the second stage moves only what was written since the first")
	assert.Greater(t, report.BytesSent["stage-2"], report.Uploaded[1]/2)
	assert.Less(t, report.BytesSent["final"], int64(1<<20), "nothing changed before the final backup")
	assert.Equal(t, int64(11), report.FilesSent["stage-2"], "10 new uploads and the edited index")
	assert.Zero(t, report.BlobsSent["stage-2"], "an unchanged image sends no blobs")
	assert.Contains(t, out.String(), "velero backup create final")
}
