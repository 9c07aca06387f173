package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestPVCAction(t *testing.T) {
	pvc := func(ann ...string) *corev1.PersistentVolumeClaim {
		p := builder.ForPersistentVolumeClaim("app", "data").ObjectMeta(builder.WithAnnotations(ann...)).
			VolumeName("pv-1").StorageClass("standard").Phase(corev1.ClaimBound).
			Selector(&metav1.LabelSelector{MatchLabels: map[string]string{"disk": "a"}}).
			DataSource(&corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "seed"}).Result()
		p.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
		return p
	}
	status := operation.Encode(&operation.TransferStatus{Header: operation.Header{ID: "u1", Phase: operation.PhaseCompleted}})
	copied := []string{
		keys.PVAction, "copy", keys.BackupMigration, "final", keys.TransferID, "u1", keys.TransferTarget, "app2/data",
		keys.TransferStorageClass, "fast", keys.TransferAccessModes, "ReadWriteMany", keys.TransferStatus, status,
		keys.BetaStorageClassAnnotation, "standard", "user/keep", "me",
	}
	tests := []struct {
		name    string
		pvc     *corev1.PersistentVolumeClaim
		mapping []string
		check   func(t *testing.T, got *corev1.PersistentVolumeClaim)
		wantErr []string
	}{
		{
			name:    "copy: mapped class and modes, nothing that names source objects",
			pvc:     pvc(copied...),
			mapping: []string{"app", "app2"},
			check: func(t *testing.T, got *corev1.PersistentVolumeClaim) {
				assert.Equal(t, "fast", *got.Spec.StorageClassName)
				assert.Equal(t, "fast", got.Annotations[keys.BetaStorageClassAnnotation])
				assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, got.Spec.AccessModes)
				assert.Empty(t, got.Spec.VolumeName)
				assert.Nil(t, got.Spec.Selector)
				assert.Nil(t, got.Spec.DataSource)
				for k := range got.Annotations {
					assert.False(t, keys.IsTransferKey(k), "transfer key %s left on the target", k)
				}
				assert.NotContains(t, got.Annotations, keys.BackupMigration)
				assert.Equal(t, "me", got.Annotations["user/keep"])
			},
		},
		{
			name:    "copy restored into another namespace than the data went to",
			pvc:     pvc(copied...),
			mapping: nil,
			wantErr: []string{"PVC app/data", "copied to app2/data", "--namespace-mappings app:app2"},
		},
		{
			name: "move: stays bound to its PV",
			pvc:  pvc(keys.PVAction, "move"),
			check: func(t *testing.T, got *corev1.PersistentVolumeClaim) {
				assert.Equal(t, "pv-1", got.Spec.VolumeName)
				assert.Equal(t, "standard", *got.Spec.StorageClassName)
			},
		},
		{
			name: "ordinary backup: untouched",
			pvc:  pvc(),
			check: func(t *testing.T, got *corev1.PersistentVolumeClaim) {
				assert.Equal(t, "pv-1", got.Spec.VolumeName)
				assert.NotNil(t, got.Spec.Selector)
			},
		},
		{
			name:    "malformed decision",
			pvc:     pvc(keys.PVAction, "teleport"),
			wantErr: []string{"PVC app/data", `ferry.dev/pv-action="teleport"`},
		},
		{
			name:    "malformed access modes",
			pvc:     pvc(keys.PVAction, "copy", keys.TransferAccessModes, "RWZ"),
			wantErr: []string{"PVC app/data", "RWZ"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			o, err := NewPVCAction(log).Execute(input(t, tc.pvc, restoreWith(tc.mapping...)))
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			var got corev1.PersistentVolumeClaim
			testutil.FromUnstructured(t, out(t, o), &got)
			tc.check(t, &got)
		})
	}
}

func TestPVAction(t *testing.T) {
	pv := func(action string) *corev1.PersistentVolume {
		return builder.ForPersistentVolume("pv-1").ObjectMeta(builder.WithAnnotations(keys.PVAction, action)).
			ClaimRef("app", "data").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Result()
	}
	log, _ := testutil.NewLogger()
	o, err := NewPVAction(log).Execute(input(t, pv("copy"), restoreWith()))
	require.NoError(t, err)
	assert.True(t, o.SkipRestore, "the target provisions its own volume for a copy")

	o, err = NewPVAction(log).Execute(input(t, pv("move"), restoreWith()))
	require.NoError(t, err)
	assert.False(t, o.SkipRestore)

	plain := builder.ForPersistentVolume("pv-2").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Result()
	o, err = NewPVAction(log).Execute(input(t, plain, restoreWith()))
	require.NoError(t, err)
	assert.False(t, o.SkipRestore)
}
