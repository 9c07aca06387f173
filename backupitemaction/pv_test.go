package backupitemaction

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestPVActionExecute(t *testing.T) {
	tests := []struct {
		name       string
		pv         *corev1.PersistentVolume
		pvc        *corev1.PersistentVolumeClaim
		backup     *velerov1.Backup
		config     map[string]string
		wantAction string // "" = no ferry annotation
		wantPolicy corev1.PersistentVolumeReclaimPolicy
		wantOrig   string
	}{
		{
			name:       "ordinary backup: untouched",
			pv:         nfsPV(),
			pvc:        boundPVC(keys.PVAction, "move"),
			backup:     ordinaryBackup(),
			wantPolicy: corev1.PersistentVolumeReclaimDelete,
		},
		{
			name:       "copy: annotated, live PV untouched",
			pv:         hostPathPV(),
			pvc:        boundPVC(),
			backup:     migrationBackup("stage"),
			wantAction: "copy",
			wantPolicy: corev1.PersistentVolumeReclaimDelete,
		},
		{
			name:       "move: live PV switched to Retain, old policy remembered",
			pv:         nfsPV(),
			pvc:        boundPVC(keys.PVAction, "move"),
			backup:     migrationBackup("final"),
			wantAction: "move",
			wantPolicy: corev1.PersistentVolumeReclaimRetain,
			wantOrig:   "Delete",
		},
		{
			name: "move of a PV already Retain: nothing to switch, nothing recorded",
			pv: func() *corev1.PersistentVolume {
				p := nfsPV()
				p.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
				return p
			}(),
			pvc:        boundPVC(keys.PVAction, "move"),
			backup:     migrationBackup("stage"),
			wantAction: "move",
			wantPolicy: corev1.PersistentVolumeReclaimRetain,
		},
		{
			name:       "config default move on a CSI driver listed in moveDrivers",
			pv:         builder.ForPersistentVolume("pv-1").ClaimRef("app", "data").ReclaimPolicy(corev1.PersistentVolumeReclaimDelete).CSI("efs.csi.aws.com", "fs-1").Result(),
			pvc:        boundPVC(),
			backup:     migrationBackup("stage"),
			config:     map[string]string{"defaultPVAction": "move", "moveDrivers": "efs.csi.aws.com"},
			wantAction: "move",
			wantPolicy: corev1.PersistentVolumeReclaimRetain,
			wantOrig:   "Delete",
		},
		{
			name:       "an impossible explicit move leaves the PV untouched (the PVC action reports it)",
			pv:         hostPathPV(),
			pvc:        boundPVC(keys.PVAction, "move"),
			backup:     migrationBackup("stage"),
			wantAction: "copy",
			wantPolicy: corev1.PersistentVolumeReclaimDelete,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cluster := testutil.NewCluster(testutil.WithObjects(tc.pv, tc.pvc))
			log, _ := testutil.NewLogger()
			a := NewPVAction(log, cluster.Clients, configOf(t, tc.config))
			updated, _, err := a.Execute(testutil.Unstructured(t, tc.pv), tc.backup)
			require.NoError(t, err)

			live, err := cluster.Kube.CoreV1().PersistentVolumes().Get(context.Background(), "pv-1", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, tc.wantPolicy, live.Spec.PersistentVolumeReclaimPolicy, "live PV policy")
			var item corev1.PersistentVolume
			testutil.FromUnstructured(t, updated, &item)
			assert.Equal(t, tc.wantPolicy, item.Spec.PersistentVolumeReclaimPolicy, "backed-up PV policy")
			if tc.wantAction == "" {
				assert.NotContains(t, updated.(*unstructured.Unstructured).GetAnnotations(), keys.PVAction)
			} else {
				assert.Equal(t, tc.wantAction, item.Annotations[keys.PVAction])
			}
			assert.Equal(t, tc.wantOrig, live.Annotations[keys.OriginalReclaimPolicy])
			assert.Equal(t, tc.wantOrig, item.Annotations[keys.OriginalReclaimPolicy])
		})
	}
}

func TestPVActionSecondMoveKeepsTheOriginalPolicy(t *testing.T) {
	pv := nfsPV()
	pv.Annotations = map[string]string{keys.OriginalReclaimPolicy: "Recycle"}
	cluster := testutil.NewCluster(testutil.WithObjects(pv, boundPVC(keys.PVAction, "move")))
	log, _ := testutil.NewLogger()
	a := NewPVAction(log, cluster.Clients, configOf(t, nil))
	_, _, err := a.Execute(testutil.Unstructured(t, pv), migrationBackup("stage"))
	require.NoError(t, err)
	live, err := cluster.Kube.CoreV1().PersistentVolumes().Get(context.Background(), "pv-1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "Recycle", live.Annotations[keys.OriginalReclaimPolicy])
}
