//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"

	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/stack"
)

// olderVelero is the oldest Velero ferry is tested with: v2 item actions (asynchronous
// operations) came in 1.12; 1.14.0 is the older release the module proxy here serves.
const olderVelero = "v1.14.0"

// TestMigrateWithOlderVelero runs a whole migration — stage, final, restore — through Velero
// v1.14.0 servers (and CLI) on both clusters, with ferry's plugins built against v1.18: the
// plugin protocol, the asynchronous item operations and the restore actions work with it.
func TestMigrateWithOlderVelero(t *testing.T) {
	t.Parallel()
	s := stack.StartT(t, stack.Options{VeleroVersion: olderVelero})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	for _, c := range s.Clusters() {
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			out, err := c.Velero(ctx, "version")
			require.NoError(ct, err)
			require.Contains(ct, out, "Server:\n\tVersion: "+olderVelero)
		}, time.Minute, time.Second, "the %s cluster runs Velero %s", c.Name, olderVelero)
	}
	requireFerryPlugins(t, ctx, src, dst)
	useSidecar(t, ctx, s, nil)
	ns, srcDir := appWithData(t, ctx, s, "compat", 2, 4)

	stage, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	assert.Equal(t, velerov1.BackupPhaseCompleted, stage.Status.Phase)
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(stage.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	dstDir := boundVolumeDir(t, ctx, dst, ns, "data")
	require.NoError(t, treediff.Equal(srcDir, dstDir, treediff.All()), "after the stage")

	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "written-after-the-stage.txt"), []byte("late"), 0o644))
	final, err := migrationBackup(t, ctx, src, "final", ns)
	require.NoError(t, err)
	assert.Equal(t, velerov1.BackupPhaseCompleted, final.Status.Phase)
	requireReplicas(t, ctx, src, ns, "web", 0, "the final quiesced the source app")
	require.NoError(t, treediff.Equal(srcDir, dstDir, treediff.All()), "after the final")

	restoreOnTarget(t, ctx, s, final.Name, "compat")
	requireReplicas(t, ctx, dst, ns, "web", 2, "the restore brings the app up with its replicas")
	noTransferLeftovers(t, ctx, s, ns)
}
