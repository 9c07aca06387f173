//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testblock"
	"github.com/ferry-dev/ferry/test/images"
	"github.com/ferry-dev/ferry/test/stack"
)

// blockVolumes migrates a raw block volume (volumeMode: Block) that a running app uses: local
// PVs on loop devices, one per cluster, as a node's disks would be. A stage copies the device,
// a second stage after 1 % of its blocks changed sends little more than those blocks, a final
// stops the app and sends the last changes, and after the restore the target's app reads the
// same bytes from its own device.
func blockVolumes(t *testing.T, ctx context.Context, s *stack.Stack, base map[string]string) {
	src, dst := s.Source, s.Target
	cfg := maps.Clone(base)
	// Transfer pods open block devices as root.
	maps.Copy(cfg, map[string]string{"transferRunAsRoot": "true"})
	require.NoError(t, s.ConfigureFerry(ctx, cfg))
	t.Cleanup(func() { _ = s.ConfigureFerry(context.Background(), base) })

	const (
		class = "e2e-local-block"
		size  = 64 << 20
		chunk = 64 << 10
	)
	ns := stack.UniqueName("block")
	devices := map[*stack.Cluster]string{}
	for _, c := range s.Clusters() {
		devices[c] = testblock.New(t, t.TempDir(), c.Name, size).Path
		localBlockPV(t, ctx, c, class, ns, "disk", devices[c], size)
	}
	require.NoError(t, src.CreateNamespace(ctx, ns, nil))
	t.Cleanup(func() {
		for _, c := range s.Clusters() {
			_ = c.DeleteNamespace(context.Background(), ns)
		}
	})
	claim := pvc(ns, "disk")
	claim.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	claim.Spec.StorageClassName = ptr.To(class)
	claim.Spec.Resources.Requests[corev1.ResourceStorage] = *resource.NewQuantity(size, resource.BinarySI)
	create(t, ctx, src, claim)

	// Half the device holds data, the rest stays zero (as a young file system's would).
	rng := rand.New(rand.NewPCG(7, 15))
	data := make([]byte, size/2)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	testblock.Write(t, devices[src], 0, data)
	create(t, ctx, src, blockApp(ns, src.Image(images.AppName)))
	appPod := waitAppRunning(t, ctx, src, ns)

	b1, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	st := transferStatus(t, ctx, src, ns, "disk")
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.Equal(t, string(b1.UID), st.ID)
	assert.Equal(t, deviceSum(t, devices[src], size), deviceSum(t, devices[dst], size), "after the first stage")
	target, err := dst.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "disk", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.PersistentVolumeBlock, *target.Spec.VolumeMode, "the target PVC is a block volume too")

	// 1 % of the device's 64 KiB blocks change while the app runs.
	changed := size / chunk / 100
	for range changed {
		block := make([]byte, chunk)
		for i := range block {
			block[i] = byte(rng.Uint32())
		}
		testblock.Write(t, devices[src], int64(rng.IntN(size/chunk))*chunk, block)
	}
	_, err = migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	st = transferStatus(t, ctx, src, ns, "disk")
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.NotNil(t, st.Last)
	t.Logf("re-stage after %d of %d blocks of 64 KiB changed: %d bytes sent for a %d-byte device", changed, size/chunk, st.Last.BytesSent, size)
	// rsync's blocks are smaller than 64 KiB here; what else goes is their checksums.
	assert.Less(t, st.Last.BytesSent, int64(2*changed*chunk+size/100), "a re-stage sends the changed blocks, not the device")
	assert.Equal(t, deviceSum(t, devices[src], size), deviceSum(t, devices[dst], size), "after the second stage")

	// The final stops the app, then sends what changed last.
	testblock.Write(t, devices[src], size-chunk, bytes.Repeat([]byte("final"), chunk/5))
	b3, err := migrationBackup(t, ctx, src, "final", ns)
	require.NoError(t, err)
	st = transferStatus(t, ctx, src, ns, "disk")
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, []string{"Deployment/app"}, st.Quiesced)
	_, err = src.Kube.CoreV1().Pods(ns).Get(ctx, appPod, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the final stopped the source app's pod")
	want := deviceSum(t, devices[src], size)
	assert.Equal(t, want, deviceSum(t, devices[dst], size), "after the final")

	// The restored app reads the final's bytes from the target's device.
	restoreOnTarget(t, ctx, s, b3.Name, "block")
	pod := waitAppRunning(t, ctx, dst, ns)
	out, err := dst.Kubectl(ctx, "-n", ns, "exec", pod, "--", "md5sum", "/dev/xvda")
	require.NoError(t, err)
	assert.Equal(t, want, strings.Fields(out)[0], "the target's app reads the source's device")
	noTransferLeftovers(t, ctx, s, ns)
}

// localBlockPV makes a local PV of the cluster's node in Block mode on device, reserved for the
// claim ns/name (the target's claim is the one ferry makes), in a storage class without a
// provisioner. Both are removed when the test ends.
func localBlockPV(t *testing.T, ctx context.Context, c *stack.Cluster, class, ns, name, device string, size int64) {
	t.Helper()
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: class},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := c.Client.Create(ctx, sc); err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)},
			VolumeMode:                    ptr.To(corev1.PersistentVolumeBlock),
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: device}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{c.NodeName}}},
			}}}},
		},
	}
	create(t, ctx, c, pv)
	t.Cleanup(func() {
		_ = c.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
}

// blockApp is a Deployment whose pod has the claim "disk" as the device /dev/xvda (root: the
// node's device files are root's).
func blockApp(ns, image string) *appsv1.Deployment {
	d := deploymentUsing(ns, "app", 1, "disk", image)
	c := &d.Spec.Template.Spec.Containers[0]
	c.Image = image
	c.Command = []string{"sleep", "86400"}
	c.VolumeMounts = nil
	c.VolumeDevices = []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/xvda"}}
	c.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}
	return d
}

// deviceSum is the MD5 of a block device's first size bytes, as md5sum prints it.
func deviceSum(t *testing.T, device string, size int64) string {
	t.Helper()
	f, err := os.Open(device)
	require.NoError(t, err)
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, io.LimitReader(f, size))
	require.NoError(t, err)
	require.Equal(t, size, n, "%s is shorter than %d bytes", device, size)
	return hex.EncodeToString(h.Sum(nil))
}

// waitAppRunning waits until the app's one pod on c runs, and returns its name.
func waitAppRunning(t *testing.T, ctx context.Context, c *stack.Cluster, ns string) string {
	t.Helper()
	var pod string
	require.EventuallyWithT(t, func(ct *assert.CollectT) { pod = runningPod(ct, ctx, c, ns, "app") }, 3*time.Minute, time.Second)
	return pod
}
