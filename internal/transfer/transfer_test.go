package transfer

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/keys"
)

func TestParseRequest(t *testing.T) {
	sc := "fast"
	tests := []struct {
		name    string
		ann     map[string]string
		want    *Request
		wantErr []string
	}{
		{name: "no request", ann: map[string]string{"other": "x"}, want: nil},
		{
			name: "hand-written minimal request defaults to a stage into the same namespace and name",
			ann:  map[string]string{keys.TransferID: "manual-1"},
			want: &Request{ID: "manual-1", Type: Stage, TargetNamespace: "app", TargetName: "data"},
		},
		{
			name: "full request",
			ann: map[string]string{
				keys.TransferID: "uid-1", keys.TransferType: "final", keys.TransferTarget: "app2/data2",
				keys.TransferStorageClass: "fast", keys.TransferAccessModes: "RWX", keys.TransferVerify: "true",
				keys.TransferBackup: "b1", keys.TransferCancel: "uid-1",
			},
			want: &Request{ID: "uid-1", Type: Final, TargetNamespace: "app2", TargetName: "data2", StorageClass: &sc,
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, Verify: true, Backup: "b1", Cancel: true},
		},
		{
			name: "cancel of another ID is not a cancel",
			ann:  map[string]string{keys.TransferID: "uid-2", keys.TransferCancel: "uid-1"},
			want: &Request{ID: "uid-2", Type: Stage, TargetNamespace: "app", TargetName: "data"},
		},
		{
			name: "every malformed key is named",
			ann: map[string]string{
				keys.TransferID: " ", keys.TransferType: "final-ish", keys.TransferTarget: "no-slash",
				keys.TransferAccessModes: "RWZ", keys.TransferVerify: "maybe", keys.TransferStorageClass: "Bad_Class",
			},
			wantErr: []string{"app/data", keys.TransferID, keys.TransferType, keys.TransferTarget, "RWZ", keys.TransferVerify, keys.TransferStorageClass},
		},
		{
			name:    "target namespace over 63 characters",
			ann:     map[string]string{keys.TransferID: "x", keys.TransferTarget: strings.Repeat("n", 64) + "/data"},
			wantErr: []string{"not a valid namespace name"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest("app", "data", tc.ann)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
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

func TestRequestAnnotationsRoundTrip(t *testing.T) {
	sc := ""
	r := &Request{ID: "u", Type: Final, TargetNamespace: "b", TargetName: "c", StorageClass: &sc,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, Verify: true, Backup: "final-1"}
	got, err := ParseRequest("a", "c", r.Annotations())
	require.NoError(t, err)
	assert.Equal(t, r, got)
}

func TestStatusRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	s := &Status{ID: "u", Phase: PhaseTransferring, BytesDone: 10, BytesTotal: 100, Percent: 10, Attempts: 2, Started: NewTime(now)}
	got, err := ParseStatus(map[string]string{keys.TransferStatus: s.Encode()})
	require.NoError(t, err)
	assert.Equal(t, s, got)
	assert.Less(t, len(s.Encode()), 300, "the status must stay small")

	none, err := ParseStatus(nil)
	require.NoError(t, err)
	assert.Nil(t, none)

	_, err = ParseStatus(map[string]string{keys.TransferStatus: "{not json"})
	assert.ErrorContains(t, err, keys.TransferStatus)
	_, err = ParseStatus(map[string]string{keys.TransferStatus: `{"started":"yesterday"}`})
	assert.Error(t, err)
}

func TestOperationID(t *testing.T) {
	ns, name, id, err := ParseOperationID(OperationID("app", "data", "1234-abcd"))
	require.NoError(t, err)
	assert.Equal(t, []string{"app", "data", "1234-abcd"}, []string{ns, name, id})
	for _, bad := range []string{"", "a/b", "a//c", "/b/c"} {
		_, _, _, err := ParseOperationID(bad)
		assert.Error(t, err, bad)
	}
}

func TestTerminal(t *testing.T) {
	assert.True(t, PhaseCompleted.Terminal())
	assert.True(t, PhaseFailed.Terminal())
	assert.True(t, PhaseCancelled.Terminal())
	assert.False(t, PhaseTransferring.Terminal())
	assert.False(t, PhasePending.Terminal())
}
