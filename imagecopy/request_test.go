package imagecopy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/keys"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    *Request
		wantErr []string
	}{
		{name: "no request", ann: map[string]string{"other": "x"}},
		{
			name: "defaults to the same namespace and name",
			ann:  map[string]string{keys.ImageCopyID: "uid-1"},
			want: &Request{ID: "uid-1", TargetNamespace: "app", TargetName: "web"},
		},
		{
			name: "full request with a matching cancel",
			ann: map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyTarget: "app-new/web", keys.ImageCopyBackup: "s1",
				keys.ImageCopyCancel: "uid-1"},
			want: &Request{ID: "uid-1", TargetNamespace: "app-new", TargetName: "web", Backup: "s1", Cancel: true},
		},
		{
			name: "a cancel of an older ID does not cancel this one",
			ann:  map[string]string{keys.ImageCopyID: "uid-2", keys.ImageCopyCancel: "uid-1"},
			want: &Request{ID: "uid-2", TargetNamespace: "app", TargetName: "web"},
		},
		{
			name:    "empty ID",
			ann:     map[string]string{keys.ImageCopyID: " "},
			wantErr: []string{"ImageStream app/web", keys.ImageCopyID, "must not be empty"},
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest("app", "web", tt.ann)
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
	r := &Request{ID: "uid-1", TargetNamespace: "app-new", TargetName: "web", Backup: "s1"}
	got, err := ParseRequest("app", "web", r.Annotations())
	require.NoError(t, err)
	assert.Equal(t, r, got)
}
