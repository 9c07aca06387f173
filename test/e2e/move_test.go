//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/test/stack"
)

// TestFinalOfAMovedVolume: a volume on shared storage (NFS) moves with the backup instead of
// being copied. A stage does nothing to the app; the final stops it first, so the source app
// no longer writes to the volume when the target's starts on it; the restore binds the same
// NFS export on the target and starts the app there with its replicas. The final asks for a
// namespace-wide quiesce (ferry.dev/quiesce-scope on the Backup): the front-end that mounts no
// volume stops with the app and comes back with it on the target.
func TestFinalOfAMovedVolume(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, nil)

	ns := s.Namespace(t, "moved")
	pv := nfsVolume(ns+"-nfs", ns, "data")
	claim := pvc(ns, "data")
	claim.Annotations = map[string]string{keys.PVAction: keys.PVActionMove}
	claim.Spec.AccessModes = pv.Spec.AccessModes
	claim.Spec.StorageClassName = new(string)
	claim.Spec.VolumeName = pv.Name
	for _, c := range s.Clusters() {
		t.Cleanup(func() {
			_ = c.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
		})
	}
	create(t, ctx, src, pv, claim, deploymentUsing(ns, "web", 2, "data", appImage(s)), deployment(ns, "front", 3, "docker.io/library/busybox:1.36"))
	require.Equal(t, pv.Name, boundVolume(t, ctx, src, ns, "data").Name)

	// A stage of a moved volume has nothing to do: no request, the app untouched.
	stage, err := migrationBackup(t, ctx, src, "stage", ns)
	require.NoError(t, err)
	assert.Equal(t, velerov1.BackupPhaseCompleted, stage.Status.Phase)
	live, err := src.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, live.Annotations, keys.TransferID, "a stage asks the data mover for nothing")
	requireReplicas(t, ctx, src, ns, "web", 2, "a stage leaves the app running")

	final, err := migrationBackup(t, ctx, src, "final", ns, "--annotations", keys.QuiesceScope+"="+keys.QuiesceScopeNamespace)
	require.NoError(t, err)
	assert.Equal(t, velerov1.BackupPhaseCompleted, final.Status.Phase)
	st := transferStatus(t, ctx, src, ns, "data")
	assert.Equal(t, string(final.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, []string{"Deployment/front", "Deployment/web"}, st.Quiesced)
	assert.Zero(t, st.BytesSent, "nothing copied: the volume moves")
	requireReplicas(t, ctx, src, ns, "web", 0, "the final stopped the source app before the volume moves")
	requireReplicas(t, ctx, src, ns, "front", 0, "a namespace-wide quiesce stops the front-end too")

	restoreOnTarget(t, ctx, s, final.Name, "moved")
	moved := boundVolume(t, ctx, dst, ns, "data")
	assert.Equal(t, pv.Name, moved.Name)
	assert.Equal(t, pv.Spec.NFS, moved.Spec.NFS, "the target mounts the same export")
	requireReplicas(t, ctx, dst, ns, "web", 2, "the restore starts the app on the target with its replicas")
	requireReplicas(t, ctx, dst, ns, "front", 3, "and the front-end with its own")
	noTransferLeftovers(t, ctx, s, ns)
}

// nfsVolume is a PV on an NFS export (at an address of the range reserved for tests), reserved
// for claim ns/name.
func nfsVolume(name, ns, claim string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				NFS: &corev1.NFSVolumeSource{Server: "198.18.0.53", Path: "/exports/" + ns},
			},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: ns, Name: claim},
		},
	}
}
