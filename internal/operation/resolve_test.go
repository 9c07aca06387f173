package operation

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

func pvc(class *string, ann ...string) *corev1.PersistentVolumeClaim {
	a := map[string]string{}
	for i := 0; i+1 < len(ann); i += 2 {
		a[ann[i]] = ann[i+1]
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data", Annotations: a},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: class, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
	}
}

func TestResolveVolume(t *testing.T) {
	rwo, rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	tests := []struct {
		name    string
		pvc     *corev1.PersistentVolumeClaim
		config  map[string]string
		want    *VolumeChoice
		wantErr string
	}{
		{name: "the source's class and modes", pvc: pvc(ptr("standard")), want: &VolumeChoice{StorageClass: ptr("standard"), AccessModes: rwo}},
		{name: "no class and no mapping: the target's default", pvc: pvc(nil), want: &VolumeChoice{AccessModes: rwo}},
		{name: "mapped by ferry-config", pvc: pvc(ptr("standard")), config: map[string]string{"storageClassMapping": "standard=fast", "accessModeMapping": "RWO=RWX", "verify": "true"},
			want: &VolumeChoice{StorageClass: ptr("fast"), AccessModes: rwx, Verify: true}},
		{name: "the PVC's own annotations win", pvc: pvc(ptr("standard"), keys.StorageClass, " gold ", keys.AccessModes, "RWX", keys.Verify, "false"),
			config: map[string]string{"storageClassMapping": "standard=fast", "verify": "true"},
			want:   &VolumeChoice{StorageClass: ptr("gold"), AccessModes: rwx, Verify: false}},
		{name: "bad access modes", pvc: pvc(nil, keys.AccessModes, "RWZ"), wantErr: "PVC app/data: annotation " + keys.AccessModes},
		{name: "bad verify", pvc: pvc(nil, keys.Verify, "perhaps"), wantErr: `annotation ` + keys.Verify + `="perhaps": want true or false`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse(tc.config)
			require.NoError(t, err)
			got, err := ResolveVolume(tc.pvc, cfg)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestResolveFillsOnlyUnsetChoices(t *testing.T) {
	cfg, err := config.Parse(map[string]string{"storageClassMapping": "standard=fast", "verify": "true"})
	require.NoError(t, err)
	r := &TransferRequest{Type: Final, StorageClass: ptr("gold")}
	require.NoError(t, r.Resolve(pvc(ptr("standard")), cfg))
	assert.Equal(t, "gold", *r.StorageClass, "the request's class is kept")
	assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, r.AccessModes)
	assert.True(t, *r.Verify, "a final verifies: ferry-config says so")

	stage := &TransferRequest{Type: Stage}
	require.NoError(t, stage.Resolve(pvc(ptr("standard"), keys.Verify, "true"), cfg))
	assert.False(t, *stage.Verify, "a stage does not: its application still writes")
	stage = &TransferRequest{Type: Stage, Verify: ptr(true)}
	require.NoError(t, stage.Resolve(pvc(ptr("standard")), cfg))
	assert.True(t, *stage.Verify, "unless its request says so")
}
