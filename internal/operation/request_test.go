package operation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/keys"
)

func ptr[T any](v T) *T { return &v }

func TestParseTransferRequest(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    *TransferRequest
		wantErr []string
	}{
		{name: "no request", ann: map[string]string{"other": "x"}, want: nil},
		{
			name: "hand-written minimal request defaults to a stage into the same namespace and name",
			ann:  map[string]string{keys.TransferID: "manual-1"},
			want: &TransferRequest{Request: Request{ID: "manual-1", TargetNamespace: "app", TargetName: "data"}, Type: Stage},
		},
		{
			name: "full request",
			ann: map[string]string{
				keys.TransferID: "uid-1", keys.TransferType: "final", keys.TransferTarget: "app2/data2",
				keys.TransferStorageClass: "fast", keys.TransferAccessModes: "RWX", keys.TransferVerify: "true",
				keys.TransferBackup: "b1", keys.TransferCancel: "uid-1",
			},
			want: &TransferRequest{Request: Request{ID: "uid-1", TargetNamespace: "app2", TargetName: "data2", Backup: "b1", Cancel: true},
				Type: Final, StorageClass: ptr("fast"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, Verify: ptr(true)},
		},
		{
			name: "a final of a moved volume",
			ann:  map[string]string{keys.TransferID: "uid-3", keys.TransferType: "final", keys.TransferMove: "true"},
			want: &TransferRequest{Request: Request{ID: "uid-3", TargetNamespace: "app", TargetName: "data"}, Type: Final, Move: true},
		},
		{
			name:    "a stage never moves",
			ann:     map[string]string{keys.TransferID: "uid-4", keys.TransferMove: "true"},
			wantErr: []string{keys.TransferMove, "only a final moves a volume"},
		},
		{
			name: "a final that quiesces the whole namespace",
			ann:  map[string]string{keys.TransferID: "uid-5", keys.TransferType: "final", keys.TransferQuiesceScope: "namespace"},
			want: &TransferRequest{Request: Request{ID: "uid-5", TargetNamespace: "app", TargetName: "data"}, Type: Final, QuiesceNamespace: true},
		},
		{
			name: "the volumes scope is the default spelled out",
			ann:  map[string]string{keys.TransferID: "uid-6", keys.TransferType: "final", keys.TransferQuiesceScope: "volumes"},
			want: &TransferRequest{Request: Request{ID: "uid-6", TargetNamespace: "app", TargetName: "data"}, Type: Final},
		},
		{
			name:    "a stage never quiesces",
			ann:     map[string]string{keys.TransferID: "uid-7", keys.TransferQuiesceScope: "namespace"},
			wantErr: []string{keys.TransferQuiesceScope, "only a final quiesces"},
		},
		{
			name: "cancel of another ID is not a cancel",
			ann:  map[string]string{keys.TransferID: "uid-2", keys.TransferCancel: "uid-1"},
			want: &TransferRequest{Request: Request{ID: "uid-2", TargetNamespace: "app", TargetName: "data"}, Type: Stage},
		},
		{
			name: "every malformed key is named",
			ann: map[string]string{
				keys.TransferID: " ", keys.TransferType: "final-ish", keys.TransferTarget: "no-slash",
				keys.TransferAccessModes: "RWZ", keys.TransferVerify: "maybe", keys.TransferStorageClass: "Bad_Class",
				keys.TransferMove: "yes please", keys.TransferQuiesceScope: "cluster",
			},
			wantErr: []string{"PVC app/data has a malformed transfer request", keys.TransferID, keys.TransferType, keys.TransferTarget,
				"RWZ", keys.TransferVerify, keys.TransferStorageClass, keys.TransferMove, keys.TransferQuiesceScope},
		},
		{
			name:    "target namespace over 63 characters",
			ann:     map[string]string{keys.TransferID: "x", keys.TransferTarget: strings.Repeat("n", 64) + "/data"},
			wantErr: []string{"not a valid namespace name"},
		},
		{
			name:    "ID over 253 characters",
			ann:     map[string]string{keys.TransferID: strings.Repeat("x", 254)},
			wantErr: []string{"longer than 253 characters"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTransferRequest("app", "data", tc.ann)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				assert.Nil(t, got)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseImageCopyRequest(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    *ImageCopyRequest
		wantErr []string
	}{
		{name: "no request", ann: map[string]string{"other": "x"}},
		{
			name: "defaults to the same namespace and name",
			ann:  map[string]string{keys.ImageCopyID: "uid-1"},
			want: &ImageCopyRequest{Request{ID: "uid-1", TargetNamespace: "app", TargetName: "web"}},
		},
		{
			name: "full request with a matching cancel",
			ann: map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyTarget: "app-new/web", keys.ImageCopyBackup: "s1",
				keys.ImageCopyCancel: "uid-1"},
			want: &ImageCopyRequest{Request{ID: "uid-1", TargetNamespace: "app-new", TargetName: "web", Backup: "s1", Cancel: true}},
		},
		{
			name: "a cancel of an older ID does not cancel this one",
			ann:  map[string]string{keys.ImageCopyID: "uid-2", keys.ImageCopyCancel: "uid-1"},
			want: &ImageCopyRequest{Request{ID: "uid-2", TargetNamespace: "app", TargetName: "web"}},
		},
		{
			name:    "empty ID",
			ann:     map[string]string{keys.ImageCopyID: " "},
			wantErr: []string{"ImageStream app/web has a malformed image copy request", keys.ImageCopyID, "must not be empty"},
		},
		{
			name:    "target without a slash",
			ann:     map[string]string{keys.ImageCopyID: "x", keys.ImageCopyTarget: "web"},
			wantErr: []string{"ImageStream app/web", keys.ImageCopyTarget, "want namespace/name"},
		},
		{
			name:    "target namespace invalid",
			ann:     map[string]string{keys.ImageCopyID: "x", keys.ImageCopyTarget: "App_New/web"},
			wantErr: []string{`namespace "App_New" is not a valid namespace name`},
		},
		{
			name:    "target name invalid",
			ann:     map[string]string{keys.ImageCopyID: "x", keys.ImageCopyTarget: "app/Web!"},
			wantErr: []string{`name "Web!" is not a valid ImageStream name`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseImageCopyRequest("app", "web", tt.ann)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, s := range tt.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRequestAnnotationsRoundTrip(t *testing.T) {
	tr := &TransferRequest{Request: Request{ID: "u", TargetNamespace: "b", TargetName: "c", Backup: "final-1"}, Type: Final,
		StorageClass: ptr(""), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, Verify: ptr(true)}
	got, err := ParseTransferRequest("a", "c", tr.Annotations())
	require.NoError(t, err)
	assert.Equal(t, tr, got)
	move := &TransferRequest{Request: Request{ID: "u", TargetNamespace: "a", TargetName: "c"}, Type: Final, Move: true, QuiesceNamespace: true}
	got, err = ParseTransferRequest("a", "c", move.Annotations())
	require.NoError(t, err)
	assert.Equal(t, move, got)

	ic := &ImageCopyRequest{Request{ID: "uid-1", TargetNamespace: "app-new", TargetName: "web", Backup: "s1"}}
	gotIC, err := ParseImageCopyRequest("app", "web", ic.Annotations())
	require.NoError(t, err)
	assert.Equal(t, ic, gotIC)
}

func TestOperationID(t *testing.T) {
	ns, name, id, err := ParseID(ID("app", "data", "1234-abcd"))
	require.NoError(t, err)
	assert.Equal(t, []string{"app", "data", "1234-abcd"}, []string{ns, name, id})
	for _, bad := range []string{"", "a/b", "a//c", "/b/c"} {
		_, _, _, err := ParseID(bad)
		assert.Error(t, err, bad)
	}
}

func TestTerminal(t *testing.T) {
	for p, want := range map[Phase]bool{
		PhaseCompleted: true, PhaseFailed: true, PhaseCancelled: true, PhaseRefused: true,
		PhasePending: false, PhasePreparing: false, PhaseQuiescing: false, PhaseTransferring: false, PhaseCopying: false,
	} {
		assert.Equal(t, want, p.Terminal(), p)
	}
}
