//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/stack"
)

// The sidecar tests that change ferry-config or kill the data mover run on stacks of their own
// (stack.Options.Name), the others share the base config of the shared stack.

// TestStageStageFinalRestore is the migration a user runs: two stage backups while the app
// keeps running (the second moves only what changed), a final backup that quiesces the app and
// moves the last delta, and the restore on the target that brings the app back with its
// replica count. The target volume equals the source byte for byte, with owners, modes, times,
// links and holes.
func TestStageStageFinalRestore(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	sidecar := useSidecar(t, ctx, s, nil)

	ns := s.Namespace(t, "uploader")
	create(t, ctx, src, pvc(ns, "data"), deploymentUsing(ns, "web", 2, "data", appImage(s)), secret(ns, "creds", map[string]string{"token": "t0ps3cret"}))
	srcDir := boundVolumeDir(t, ctx, src, ns, "data")
	fillVolume(t, srcDir)
	full := treediff.All()

	// Stage 1: everything goes.
	b1, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	st1 := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(b1.UID), st1.ID)
	assert.Equal(t, operation.PhaseCompleted, st1.Phase, st1.Message)
	dstDir := boundVolumeDir(t, ctx, dst, ns, "data")
	require.NoError(t, treediff.Equal(srcDir, dstDir, full), "after stage 1")
	target, err := dst.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "fast", *target.Spec.StorageClassName, "storageClassMapping standard=fast")
	assert.Equal(t, 1, b1.Status.BackupItemOperationsCompleted, "one async operation per copied PVC")
	t.Logf("stage 1: %d files, %d bytes total, %d bytes sent, %d attempt(s)", st1.Files, st1.BytesTotal, st1.BytesSent, st1.Attempts)

	// Stage 2: only the delta goes.
	changed := mutate(t, srcDir, 1, 3)
	b2, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	st2 := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(b2.UID), st2.ID)
	assert.Equal(t, int64(changed), st2.FilesSent, "a second stage sends only the changed files")
	assert.Less(t, st2.BytesSent, st1.BytesSent/20, "and a small part of the bytes")
	require.NoError(t, treediff.Equal(srcDir, dstDir, full), "after stage 2")
	assert.Contains(t, describeBackup(t, ctx, src, b2.Name), "Completed", "velero backup describe --details shows the operation")

	// Final: quiesce, last delta, and a verify pass (the Backup asks for it).
	changed = mutate(t, srcDir, 2, 2)
	b3, err := migrationBackup(t, ctx, src, "final", ns, "--annotations", keys.Verify+"=true")
	require.NoError(t, err)
	st3 := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, operation.PhaseCompleted, st3.Phase, st3.Message)
	assert.Equal(t, int64(changed), st3.FilesSent)
	if assert.NotNil(t, st3.Verified, "the final was verified") {
		assert.Equal(t, st3.Files, st3.Verified.Files, "every file compared")
		assert.Zero(t, st3.Verified.Mismatches)
	}
	assert.Contains(t, describeBackup(t, ctx, src, b3.Name), "verified: ", "velero backup describe --details says so")
	assert.Equal(t, []string{"Deployment/web"}, st3.Quiesced)
	web, err := src.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(0), *web.Spec.Replicas, "the final backup quiesced the source app")
	assert.Equal(t, "2", web.Annotations[keys.PreQuiesceReplicas])
	require.NoError(t, treediff.Equal(srcDir, dstDir, full), "after the final pass")
	reasons := eventReasons(t, ctx, src, ns, "PersistentVolumeClaim", "data")
	for _, want := range []string{"TransferAccepted", "TransferPreparing", "TransferQuiescing", "Quiesced", "TransferStarted", "TransferVerified", "TransferCompleted"} {
		assert.Contains(t, reasons, want, "Events on the source PVC")
	}

	// `ferry-datamover status` (kubectl ferry status) lists the PVC with its last success and
	// what the verify pass found.
	require.NotNil(t, st3.Verified)
	statusOut, err := exec.CommandContext(ctx, filepath.Join(s.FerryBinDir, "ferry-datamover"), "status", "-A", "--kubeconfig", src.Kubeconfig).Output()
	require.NoError(t, err)
	t.Logf("ferry-datamover status -A:\n%s", statusOut)
	assert.Regexp(t, `(?m)^`+ns+`\s+PVC\s+data\s+`+b3.Name+`\s+Completed\s+100%\s+.*\s+\S+ ago\s+identical \(`+strconv.FormatInt(st3.Verified.Files, 10)+` files\)$`, string(statusOut))
	statusJSON, err := exec.CommandContext(ctx, filepath.Join(s.FerryBinDir, "ferry-datamover"), "status", "-n", ns, "-o", "json", "--kubeconfig", src.Kubeconfig).Output()
	require.NoError(t, err)
	var listed struct{ Items []view.Row }
	require.NoError(t, json.Unmarshal(statusJSON, &listed))
	require.Len(t, listed.Items, 1, "one PVC in the namespace")
	assert.Equal(t, "data", listed.Items[0].Name)
	require.NotNil(t, listed.Items[0].LastSuccess)
	assert.WithinDuration(t, st3.Completed.Time, *listed.Items[0].LastSuccess, time.Second)
	assert.Equal(t, fmt.Sprintf("identical (%d files)", st3.Verified.Files), listed.Items[0].Verified)

	// Restore on the target: the app comes back with its replica count, the data stays.
	restoreOnTarget(t, ctx, s, b3.Name, "final")
	d := requireWorkload(t, ctx, dst, ns, "web", 2)
	assert.NotContains(t, d.Annotations, keys.PreQuiesceReplicas)
	require.NoError(t, treediff.Equal(srcDir, dstDir, full), "after the restore")
	got, err := dst.Kube.CoreV1().Secrets(ns).Get(ctx, "creds", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "t0ps3cret", string(got.Data["token"]))

	noTransferLeftovers(t, ctx, s, ns)
	checkSidecarMetrics(t, ctx, sidecar)
}

// checkSidecarMetrics reads the data mover's Prometheus endpoint as a monitoring system would
// (through the API server's pod proxy: `kubectl get --raw …/pods/NAME:8087/proxy/metrics`), from
// deploy/datamover's pod with its read-only root file system.
func checkSidecarMetrics(t *testing.T, ctx context.Context, p *stack.Sidecar) {
	t.Helper()
	pod, err := p.Cluster().Kube.CoreV1().Pods(p.Cluster().VeleroNamespace).Get(ctx, p.Pod, metav1.GetOptions{})
	require.NoError(t, err)
	sc := pod.Spec.Containers[0].SecurityContext
	require.NotNil(t, sc)
	assert.Equal(t, ptr.To(true), sc.ReadOnlyRootFilesystem, "deploy/datamover's container runs with a read-only root")
	body, err := p.Metrics(ctx)
	require.NoError(t, err)
	for _, m := range []string{`ferry_transfers_total{result="completed",type="stage"}`, `ferry_transfers_total{result="completed",type="final"}`, "ferry_transfer_bytes_total", "ferry_transfer_duration_seconds_bucket"} {
		assert.Contains(t, string(body), m)
	}
}

// TestStateOnly moves only state, without a backup or restore: GitOps deploys the app on the
// target, including a PVC of another storage class; an admin asks for the PVC's copy with
// `ferry-datamover request`, and it is filled in place (it was empty, so ferry may).
// The PVC's name is long enough that every name ferry derives from it must be shortened.
func TestStateOnly(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, nil)

	ns := s.Namespace(t, "state")
	claim := "uploads-" + strings.Repeat("x", 80) // names of transfer objects must still be ≤ 63
	create(t, ctx, src, pvc(ns, claim))
	srcDir := boundVolumeDir(t, ctx, src, ns, claim)
	fillVolume(t, srcDir)
	require.NoError(t, dst.CreateNamespace(ctx, ns, nil))
	preProvisioned := pvc(ns, claim)
	standard := "standard"
	preProvisioned.Spec.StorageClassName = &standard
	preProvisioned.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
	create(t, ctx, dst, preProvisioned)

	out, err := exec.CommandContext(ctx, filepath.Join(s.FerryBinDir, "ferry-datamover"), "request", "pvc", ns+"/"+claim, "--id", "by-hand-1",
		"--kubeconfig", src.Kubeconfig, "--velero-namespace", src.VeleroNamespace).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "requested stage transfer by-hand-1 of PVC "+ns+"/"+claim+" to "+ns+"/"+claim)

	st := waitTransfer(t, ctx, src, ns, claim, "by-hand-1", 5*time.Minute)
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	got, err := dst.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "standard", *got.Spec.StorageClassName, "the pre-provisioned PVC is filled in place, not replaced")
	assert.NotContains(t, got.Labels, keys.CreatedBy)
	live, err := src.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, string(live.UID), got.Annotations[keys.PairedWith], "found empty, so ferry filled and paired it")
	require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, claim), treediff.All()))
	deployments, err := dst.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, deployments.Items, "state only: no objects are restored")
	noTransferLeftovers(t, ctx, s, ns)
}

// TestScheduledStages runs `velero schedule create` with the stage label: each scheduled backup
// is an incremental transfer.
func TestScheduledStages(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, nil)

	ns := s.Namespace(t, "sched")
	create(t, ctx, src, pvc(ns, "data"))
	srcDir := boundVolumeDir(t, ctx, src, ns, "data")
	fillVolume(t, srcDir)
	schedule := stack.UniqueName("stage")
	_, err := src.Velero(ctx, "schedule", "create", schedule, "--schedule", "@every 1m", "--include-namespaces", ns,
		"--snapshot-volumes=false", "--labels", keys.Migration+"=stage")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = src.Velero(context.Background(), "schedule", "delete", schedule, "--confirm") })

	// The first scheduled backup copies everything, the next only what changed meanwhile. The
	// schedule is paused while the test reads the PVC's status: a backup every minute may
	// otherwise start before it looks.
	first := waitScheduledBackup(t, ctx, src, schedule, "")
	last := quietSchedule(t, ctx, src, schedule)
	st1 := transferStatus(t, ctx, src, ns, "data")
	require.Equal(t, string(last.UID), st1.ID, "the status is the newest scheduled backup's (%s, first %s)", last.Name, first.Name)
	require.Equal(t, operation.PhaseCompleted, st1.Phase, st1.Message)
	changed := mutate(t, srcDir, 1, 2)
	_, err = src.Velero(ctx, "schedule", "unpause", schedule)
	require.NoError(t, err)
	waitScheduledBackup(t, ctx, src, schedule, last.Name)
	last = quietSchedule(t, ctx, src, schedule)
	st2 := transferStatus(t, ctx, src, ns, "data")
	require.Equal(t, string(last.UID), st2.ID, "the status is the newest scheduled backup's (%s)", last.Name)
	require.Equal(t, operation.PhaseCompleted, st2.Phase, st2.Message)
	// At most what changed: a scheduled backup replaced meanwhile may have sent some of it.
	assert.LessOrEqual(t, st2.FilesSent, int64(changed))
	require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
}

// waitScheduledBackup waits for a Completed backup of the schedule other than after (and newer).
// A scheduled stage that outlasts the schedule's period is replaced by the next one (the
// older backup is PartiallyFailed, saying so): that is skipped, any other failure is not.
func waitScheduledBackup(t *testing.T, ctx context.Context, c *stack.Cluster, schedule, after string) *velerov1.Backup {
	t.Helper()
	var found *velerov1.Backup
	replaced := map[string]bool{}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		var list velerov1.BackupList
		require.NoError(ct, c.Client.List(ctx, &list))
		slices.SortFunc(list.Items, func(a, b velerov1.Backup) int { return strings.Compare(a.Name, b.Name) })
		for i := range list.Items {
			b := &list.Items[i]
			if b.Labels[velerov1.ScheduleNameLabel] != schedule || b.Name <= after || replaced[b.Name] {
				continue
			}
			if b.Status.Phase == velerov1.BackupPhasePartiallyFailed {
				desc := describeBackup(t, ctx, c, b.Name)
				require.Contains(ct, desc, "was replaced by", "scheduled backup %s: %s", b.Name, b.Status.FailureReason)
				replaced[b.Name] = true
				continue
			}
			require.Equal(ct, velerov1.BackupPhaseCompleted, b.Status.Phase, "scheduled backup %s", b.Name)
			require.Equal(ct, "stage", b.Labels[keys.Migration], "the schedule's label reaches its backups")
			found = b
			return
		}
		require.Fail(ct, "no new scheduled backup yet")
	}, 5*time.Minute, 2*time.Second)
	return found
}

// quietSchedule pauses the schedule and waits until none of its backups runs; it returns the
// newest, which must have completed.
func quietSchedule(t *testing.T, ctx context.Context, c *stack.Cluster, schedule string) *velerov1.Backup {
	t.Helper()
	_, err := c.Velero(ctx, "schedule", "pause", schedule)
	require.NoError(t, err)
	var newest *velerov1.Backup
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		var list velerov1.BackupList
		require.NoError(ct, c.Client.List(ctx, &list, crclient.MatchingLabels{velerov1.ScheduleNameLabel: schedule}))
		require.NotEmpty(ct, list.Items)
		slices.SortFunc(list.Items, func(a, b velerov1.Backup) int { return strings.Compare(a.Name, b.Name) })
		for _, b := range list.Items {
			switch b.Status.Phase {
			case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed, velerov1.BackupPhaseFailedValidation:
			default:
				require.Fail(ct, "a scheduled backup still runs", "%s: %s", b.Name, b.Status.Phase)
			}
		}
		newest = &list.Items[len(list.Items)-1]
	}, 5*time.Minute, 2*time.Second)
	require.Equal(t, velerov1.BackupPhaseCompleted, newest.Status.Phase, "the newest scheduled backup %s", newest.Name)
	return newest
}

// TestSidecarKilledMidTransfer kills the sidecar (SIGKILL, no goodbye) while a transfer runs
// and starts a new one: it picks the transfer up from what it finds in the clusters, finishes
// it, and leaves no pods or Secrets behind.
func TestSidecarKilledMidTransfer(t *testing.T) {
	// A stack of its own: it slows ferry-config down and kills the data mover, beside the rest.
	t.Parallel()
	s := stack.StartT(t, stack.Options{OpenShift: true, Name: "restart"})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	// A bandwidth limit keeps the transfer running long enough to kill the sidecar in it.
	sidecar := useSidecar(t, ctx, s, map[string]string{"bwlimitKBps": "4096"})
	t.Cleanup(func() { useSidecar(t, context.Background(), s, nil) })

	ns := s.Namespace(t, "restart")
	create(t, ctx, src, pvc(ns, "data"))
	srcDir := boundVolumeDir(t, ctx, src, ns, "data")
	fillVolume(t, srcDir)
	name := stack.UniqueName("stage")
	_, err := src.Velero(ctx, "backup", "create", name, "--include-namespaces", ns, "--snapshot-volumes=false", "--labels", keys.Migration+"=stage")
	require.NoError(t, err)

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		p, err := src.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		require.NoError(ct, err)
		st, _ := operation.ParseTransferStatus(p.Annotations)
		require.NotNil(ct, st)
		require.Equal(ct, operation.PhaseTransferring, st.Phase)
		require.Greater(ct, st.BytesDone, int64(0), "some data moved")
	}, 5*time.Minute, 200*time.Millisecond)
	require.NoError(t, sidecar.Kill(ctx))
	t.Log("sidecar killed while transferring; starting another")
	useSidecar(t, ctx, s, map[string]string{"bwlimitKBps": "4096"})

	b, err := src.WaitBackup(ctx, name)
	require.NoError(t, err)
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(b.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
	noTransferLeftovers(t, ctx, s, ns)
}

// TestBadInputFailsClearly: a storage class the target does not have, and an unreachable target,
// end the backup PartiallyFailed with the reason in `velero backup describe`, a Warning Event on
// the PVC, and nothing deleted on either cluster.
func TestBadInputFailsClearly(t *testing.T) {
	// A stack of its own: it points ferry-config at a missing class and an unreachable target.
	t.Parallel()
	s := stack.StartT(t, stack.Options{OpenShift: true, Name: "badinput"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	t.Cleanup(func() { useSidecar(t, context.Background(), s, nil) })

	ns := s.Namespace(t, "bad")
	create(t, ctx, src, pvc(ns, "data"))
	srcDir := boundVolumeDir(t, ctx, src, ns, "data")
	writeVolume(t, ctx, src, ns, "data", map[string]string{"keep.txt": "precious"})

	t.Run("unknown storage class", func(t *testing.T) {
		useSidecar(t, ctx, s, map[string]string{"storageClassMapping": "standard=gold"})
		b, err := migrationBackup(t, ctx, src, "stage", ns)
		require.Error(t, err)
		assert.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
		assert.Contains(t, describeBackup(t, ctx, src, b.Name), `storage class "gold" does not exist on the target cluster (it has: fast, standard)`)
		assert.Contains(t, eventReasons(t, ctx, src, ns, "PersistentVolumeClaim", "data"), "TransferFailed")
		_, err = dst.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no target PVC was made")
	})
	t.Run("unreachable target", func(t *testing.T) {
		unreachable := []byte("apiVersion: v1\nkind: Config\nclusters: [{name: t, cluster: {server: 'https://127.0.0.1:9'}}]\n" +
			"users: [{name: t, user: {token: x}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\ncurrent-context: t\n")
		_, err := src.Kube.CoreV1().Secrets(src.VeleroNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: src.VeleroNamespace, Name: "ferry-target-unreachable"},
			Data:       map[string][]byte{"kubeconfig": unreachable},
		}, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			require.NoError(t, err)
		}
		useSidecar(t, ctx, s, map[string]string{"targetKubeconfigSecret": "ferry-target-unreachable", "prepareTimeout": "30s"})
		b, err := migrationBackup(t, ctx, src, "stage", ns)
		require.Error(t, err)
		assert.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
		desc := describeBackup(t, ctx, src, b.Name)
		assert.Contains(t, desc, "Preparing timed out")
		assert.Contains(t, desc, "127.0.0.1:9")
	})
	// Nothing was lost: the source data is intact.
	content, err := os.ReadFile(srcDir + "/keep.txt")
	require.NoError(t, err)
	assert.Equal(t, "precious", string(content))
	noTransferLeftovers(t, ctx, s, ns)
}
