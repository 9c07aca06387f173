//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/stack"
)

// slowStack runs the tests that need a copy slow enough to act during it, beside the shared
// stack, all with slowConfig: copies at about a quarter of its limit, some 0.5 MiB/s. Its tests
// can run some ten migrations at once (TestFaults has six rows). With ferry's default
// concurrency of 4 the later transfers waited minutes for a slot, and with Velero's default of
// one backup at a time the later Backups waited minutes in Velero's queue, so a fault or a
// second request meant for mid-copy came after the copy.
var (
	slowStack  = stack.Options{OpenShift: true, Name: "slow", VeleroArgs: []string{"--concurrent-backups=4"}}
	slowConfig = map[string]string{"bwlimitKBps": "2048", "concurrency": "16"}
)

// TestOverlappingRequests: two stage backups of one namespace at once (a schedule overlapping
// itself, two people at the same time) both end — the older replaced, with the reason — with one
// transfer server on the target and the tree equal.
func TestOverlappingRequests(t *testing.T) {
	// On the "slow" stack: the same slowed ferry-config as its other tests.
	s := stacks.Parallel(t, slowStack)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, slowConfig)

	// Big enough (about 2 minutes at this limit) that the second request reaches a Velero
	// backup worker while the first still copies, even behind the other tests' backups on this
	// stack.
	ns, srcDir := appWithData(t, ctx, s, "overlap", 1, 40)
	stage := []string{"--include-namespaces", ns, "--snapshot-volumes=false", "--labels", keys.Migration + "=stage"}

	first := startBackup(t, ctx, src, "stage", stage...)
	waitPhase(t, ctx, src, ns, string(first.UID), operation.PhaseTransferring)
	second := startBackup(t, ctx, src, "stage", stage...)
	waitPhase(t, ctx, src, ns, string(second.UID), operation.PhaseTransferring)
	servers, err := dst.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{keys.TransferRole: "server"}).String()})
	require.NoError(t, err)
	assert.Len(t, servers.Items, 1, "the replaced transfer's server is gone before the newer one serves")

	b1, _ := src.WaitBackup(ctx, first.Name)
	b2, err := src.WaitBackup(ctx, second.Name)
	require.NoError(t, err, "the newer stage completes")
	assert.Equal(t, velerov1.BackupPhaseCompleted, b2.Status.Phase)
	assert.Equal(t, velerov1.BackupPhasePartiallyFailed, b1.Status.Phase, "the older stage ends, replaced")
	assert.Contains(t, describeBackup(t, ctx, src, first.Name), "was replaced by", "velero backup describe says why")
	require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))

	noTransferLeftovers(t, ctx, s, ns)
}

// TestStageDuringFinal: a stage backup while a final transfer of the PVC runs fails at once
// with the reason, and the final completes, its app left quiesced as a final leaves it.
func TestStageDuringFinal(t *testing.T) {
	// On the "slow" stack: the same slowed ferry-config as its other tests.
	s := stacks.Parallel(t, slowStack)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, slowConfig)

	// Big enough (about 2 minutes at this limit) that the stage reaches Velero's one backup
	// worker while the final still copies, even behind the other tests' backups on this stack.
	ns, srcDir := appWithData(t, ctx, s, "stagefinal", 1, 40)

	final := startBackup(t, ctx, src, "final", "--include-namespaces", ns, "--snapshot-volumes=false", "--labels", keys.Migration+"=final")
	waitPhase(t, ctx, src, ns, string(final.UID), operation.PhaseTransferring)
	stage, err := migrationBackup(t, ctx, src, "stage", ns)
	require.Error(t, err, "a stage during a final fails")
	assert.Equal(t, velerov1.BackupPhasePartiallyFailed, stage.Status.Phase)
	assert.Contains(t, describeBackup(t, ctx, src, stage.Name), "a final transfer", "velero backup describe says a final is under way")

	bf, err := src.WaitBackup(ctx, final.Name)
	require.NoError(t, err, "the final completes")
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(bf.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	web, err := src.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(0), *web.Spec.Replicas, "the final quiesced the app, and no stage brought it back")
	require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
	noTransferLeftovers(t, ctx, s, ns)
}

// startBackup runs `velero backup create` without waiting and returns the Backup once it exists.
func startBackup(t *testing.T, ctx context.Context, c *stack.Cluster, prefix string, args ...string) *velerov1.Backup {
	t.Helper()
	name := stack.UniqueName(prefix)
	_, err := c.Velero(ctx, append([]string{"backup", "create", name}, args...)...)
	require.NoError(t, err)
	var b velerov1.Backup
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		require.NoError(ct, c.Client.Get(ctx, crclient.ObjectKey{Namespace: c.VeleroNamespace, Name: name}, &b))
	}, time.Minute, 250*time.Millisecond)
	return &b
}

// waitPhase waits until the PVC "data" of ns reports transfer id in phase.
// A timeout says what the PVC carried and what Velero made of its Backups.
func waitPhase(t *testing.T, ctx context.Context, c *stack.Cluster, ns, id string, phase operation.Phase) {
	t.Helper()
	ok := assert.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := transferStatus(ct, ctx, c, ns, "data")
		require.Equal(ct, id, st.ID)
		require.Equal(ct, phase, st.Phase, st.Message)
	}, 3*time.Minute, 250*time.Millisecond)
	if ok {
		return
	}
	if p, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{}); err == nil {
		t.Logf("PVC %s/data annotations: %s", ns, prettyJSON(p.Annotations))
	}
	var bs velerov1.BackupList
	if err := c.Client.List(ctx, &bs, crclient.InNamespace(c.VeleroNamespace)); err == nil {
		for _, b := range bs.Items {
			t.Logf("Backup %s uid %s: %s %v", b.Name, b.UID, b.Status.Phase, b.Status.ValidationErrors)
		}
	}
	t.FailNow()
}
