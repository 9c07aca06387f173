//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/proctest"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/images"
	"github.com/ferry-dev/ferry/test/stack"
)

// appUID is the user the restricted app and the non-root transfer pods run as.
const appUID = 1234

// TestRestrictedMigrationOnRealNodes moves a running app between two clusters whose nodes run
// pods for real (kubelet, containerd, runc), out of and into namespaces that enforce Pod
// Security "restricted": a stage while the app serves, a final that stops its pod, a restore
// after which the target's pod serves the data. Ferry runs as an admin installs it: the data
// mover is deploy/datamover's Deployment from ferry's image, with its own service account; the
// transfer pods run that image as the app's user (transferRunAsRoot: false), so what the API
// server admits is also what runs.
//
// Host-path volumes ignore fsGroup, so the test hands the volumes' folders to the app's user,
// as a CSI driver honouring fsGroup would; the target PVC is made ahead, as GitOps would.
func TestRestrictedMigrationOnRealNodes(t *testing.T) {
	t.Parallel() // the only test on the real-nodes stack: its ferry-config is its own
	s := stack.StartT(t, stack.Options{Name: "restricted"})
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	cfg := maps.Clone(baseFerryConfig)
	maps.Copy(cfg, map[string]string{
		"transferImage":     src.Image(images.DatamoverName),
		"transferRunAsRoot": "false",
		"transferRunAsUser": "1234",
		// The target PVC exists already (as GitOps made it): no class to map.
		"storageClassMapping": "",
	})
	require.NoError(t, s.ConfigureFerry(ctx, cfg))
	_, err := s.EnsureSidecar(ctx)
	require.NoError(t, err, "the data mover from deploy/datamover and ferry's image")

	ns := stack.UniqueName("restricted")
	for _, c := range s.Clusters() {
		require.NoError(t, c.CreateNamespace(ctx, ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}))
		t.Cleanup(func() { _ = c.DeleteNamespace(context.Background(), ns) })
	}
	create(t, ctx, src, pvc(ns, "data"))
	create(t, ctx, dst, pvc(ns, "data"))
	srcDir, dstDir := boundVolumeDir(t, ctx, src, ns, "data"), boundVolumeDir(t, ctx, dst, ns, "data")
	for _, d := range []string{srcDir, dstDir} {
		require.NoError(t, os.Chown(d, appUID, appUID))
	}
	writeAs(t, srcDir, appUID, map[string]string{"index.html": "version 1\n", "uploads/a.bin": strings.Repeat("a", 300<<10), "uploads/b.txt": "beta"})
	require.NoError(t, os.Symlink("uploads/b.txt", filepath.Join(srcDir, "latest")))
	require.NoError(t, os.Lchown(filepath.Join(srcDir, "latest"), appUID, appUID))
	create(t, ctx, src, restrictedWeb(ns, src.Image(images.AppName)))
	srcPod := waitServing(t, ctx, src, ns, "version 1")

	// Stage while the app serves.
	b1, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err, "the transfer pods are admitted under restricted and run as %d", appUID)
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(b1.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.NoError(t, treediff.Equal(srcDir, dstDir, treediff.All()), "after the stage")
	_, err = src.Kube.CoreV1().Pods(ns).Get(ctx, srcPod, metav1.GetOptions{})
	require.NoError(t, err, "a stage leaves the app's pod running")

	// Final: the app's pod stops before the last pass. From here on the app writes a heartbeat
	// file ten times a second: the trees can only be equal after the final if its last write
	// came before the last pass, and no process of its pod is left on the source node.
	pod, err := src.Kube.CoreV1().Pods(ns).Get(ctx, srcPod, metav1.GetOptions{})
	require.NoError(t, err)
	writeAs(t, srcDir, appUID, map[string]string{"index.html": "version 2\n", heartbeatGo: ""})
	require.NoError(t, os.Remove(filepath.Join(srcDir, "uploads/a.bin")))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		beats, err := os.ReadFile(filepath.Join(srcDir, heartbeat))
		require.NoError(ct, err)
		require.NotEqual(ct, "1\n", string(beats), "the app writes")
	}, time.Minute, 100*time.Millisecond)
	require.NotEmpty(t, proctest.PodPIDs(string(pod.UID)), "the app's processes are found by their pod's cgroup")
	b2, err := migrationBackup(t, ctx, src, "final", ns)
	require.NoError(t, err)
	st = transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, []string{"Deployment/web"}, st.Quiesced)
	pods, err := src.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=web"})
	require.NoError(t, err)
	assert.Empty(t, names(pods.Items), "the final stopped the source app's pod")
	assert.Empty(t, proctest.PodPIDs(string(pod.UID)), "no process of the app's pod is left on the source node")
	require.NoError(t, treediff.Equal(srcDir, dstDir, treediff.All()), "after the final: the app's last heartbeat came before the last pass")
	beats, err := os.ReadFile(filepath.Join(dstDir, heartbeat))
	require.NoError(t, err)
	t.Logf("the app wrote %s heartbeats before the final stopped it", strings.TrimSpace(string(beats)))

	// Restore: the target's pod runs and serves what the final carried.
	restoreOnTarget(t, ctx, s, b2.Name, "final")
	waitServing(t, ctx, dst, ns, "version 2")
	noTransferLeftovers(t, ctx, s, ns)

	var row string
	t.Run("client pod cannot be scheduled", func(t *testing.T) { row = unschedulableClient(t, ctx, s, cfg) })
	checkReliabilityTable(t, []string{row})
	t.Run("block volume", func(t *testing.T) { blockVolumes(t, ctx, s, cfg) })
}

// unschedulableClient: transfer pods may only run on nodes labelled as ferry-config's
// transferNodeSelector says, and only the target's node is; the server starts, the client stays
// Pending, and after prepareTimeout the backup fails with the scheduler's reason, leaving
// nothing behind and the source as it was.
func unschedulableClient(t *testing.T, ctx context.Context, s *stack.Stack, base map[string]string) string {
	src, dst := s.Source, s.Target
	const label = "e2e.ferry.dev/transfers"
	patch := func(value string) []byte {
		return []byte(`{"metadata":{"labels":{"` + label + `":` + value + `}}}`)
	}
	_, err := dst.Kube.CoreV1().Nodes().Patch(ctx, dst.NodeName, types.MergePatchType, patch(`"yes"`), metav1.PatchOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = dst.Kube.CoreV1().Nodes().Patch(context.Background(), dst.NodeName, types.MergePatchType, patch("null"), metav1.PatchOptions{})
	})
	cfg := maps.Clone(base)
	// Long enough for the server pod to become ready on a loaded machine (20 s was not, once).
	const prepareTimeout = "45s"
	maps.Copy(cfg, map[string]string{"transferNodeSelector": label + "=yes", "prepareTimeout": prepareTimeout, "transferRunAsRoot": "true"})
	require.NoError(t, s.ConfigureFerry(ctx, cfg))
	t.Cleanup(func() { _ = s.ConfigureFerry(context.Background(), base) })

	ns := s.Namespace(t, "unschedulable")
	create(t, ctx, src, pvc(ns, "data"))
	srcDir := boundVolumeDir(t, ctx, src, ns, "data")
	writeVolume(t, ctx, src, ns, "data", map[string]string{"keep.txt": "precious"})
	before := treeSnapshot(t, srcDir)

	start := time.Now()
	b, err := migrationBackup(t, ctx, src, "stage", ns)
	require.Error(t, err)
	assert.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	desc := describeBackup(t, ctx, src, b.Name)
	assert.Contains(t, desc, "did not start within "+prepareTimeout+" (prepareTimeout)")
	assert.Contains(t, desc, "didn't match Pod's node affinity/selector", "the scheduler's reason")
	assert.Contains(t, eventReasons(t, ctx, src, ns, "PersistentVolumeClaim", "data"), "TransferFailed")
	assert.Equal(t, before, treeSnapshot(t, srcDir), "the source data is untouched")
	noTransferLeftovers(t, ctx, s, ns)
	return fmt.Sprintf("| client pod cannot be scheduled | before Transferring (stage) | %s: %s | %s |", b.Status.Phase, transferStatus(t, ctx, src, ns, "data").Message, time.Since(start).Round(time.Second))
}

// heartbeatGo, once in the app's volume, makes restrictedWeb count ten times a second into
// heartbeat.
const heartbeatGo, heartbeat = "heartbeat.go", "heartbeat"

// restrictedWeb is an app that meets Pod Security "restricted": busybox httpd as appUID serving
// its volume, and a writer of heartbeat (see heartbeatGo).
func restrictedWeb(ns, image string) *appsv1.Deployment {
	d := deploymentUsing(ns, "web", 1, "data", image)
	spec := &d.Spec.Template.Spec
	spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsUser: ptr.To[int64](appUID), RunAsGroup: ptr.To[int64](appUID), RunAsNonRoot: ptr.To(true), FSGroup: ptr.To[int64](appUID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	c := &spec.Containers[0]
	c.Image = image
	c.Command = images.Serve("/srv", 8080, `i=0; while true; do if [ -e /srv/`+heartbeatGo+` ]; then i=$((i+1)); echo $i > /srv/`+heartbeat+`; fi; sleep 0.1; done`)
	c.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}
	c.SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return d
}

// waitServing waits until the app's pod on c is running and serves want as its index, and
// returns the pod's name.
func waitServing(t *testing.T, ctx context.Context, c *stack.Cluster, ns, want string) string {
	t.Helper()
	var pod string
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		running := runningPod(ct, ctx, c, ns, "web")
		out, err := c.Kubectl(ctx, "-n", ns, "exec", running, "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/index.html")
		require.NoError(ct, err)
		require.Equal(ct, want+"\n", out)
		pod = running
	}, 3*time.Minute, time.Second)
	return pod
}

// runningPod is the name of app's one running pod on c (none or several fail ct).
func runningPod(ct *assert.CollectT, ctx context.Context, c *stack.Cluster, ns, app string) string {
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=" + app})
	require.NoError(ct, err)
	var running []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p.Name)
		}
	}
	require.Len(ct, running, 1, "running %s pods on the %s cluster: %v", app, c.Name, names(pods.Items))
	return running[0]
}

// writeAs writes files (and their folders) under dir owned by uid.
func writeAs(t *testing.T, dir string, uid int, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		for d := filepath.Dir(p); d != dir && d != "."; d = filepath.Dir(d) {
			require.NoError(t, os.MkdirAll(d, 0o750))
			require.NoError(t, os.Chown(d, uid, uid))
		}
		require.NoError(t, os.WriteFile(p, []byte(content), 0o640))
		require.NoError(t, os.Chown(p, uid, uid))
	}
}
