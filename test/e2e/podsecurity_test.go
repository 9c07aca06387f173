//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/stack"
)

// TestPodSecurityNamespaces migrates a PVC out of, and into, namespaces that enforce Pod
// Security "baseline" with the default root transfer pods: the API server's PodSecurity admission
// would refuse a transfer pod that asked for more than baseline's capabilities (DAC_READ_SEARCH
// did). "restricted", with transferRunAsRoot: false: TestRestrictedMigrationOnRealNodes.
func TestPodSecurityNamespaces(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, nil)
	enforce := map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}
	ns := stack.UniqueName("psa-baseline")
	for _, c := range s.Clusters() {
		require.NoError(t, c.CreateNamespace(ctx, ns, enforce))
		t.Cleanup(func() { _ = c.DeleteNamespace(context.Background(), ns) })
	}
	create(t, ctx, src, pvc(ns, "data"))
	writeVolume(t, ctx, src, ns, "data", map[string]string{"a.txt": "alpha", "dir/b.txt": "beta"})
	b, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err, "the transfer pods are admitted under baseline")
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(b.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.NoError(t, treediff.Equal(boundVolumeDir(t, ctx, src, ns, "data"), boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
	noTransferLeftovers(t, ctx, s, ns)
}
