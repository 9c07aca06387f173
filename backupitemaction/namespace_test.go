package backupitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestNamespaceAction(t *testing.T) {
	ns := func(ann map[string]string) *unstructured.Unstructured {
		u := testutil.Object("v1", "Namespace", "", "shop", nil)
		u.SetAnnotations(ann)
		return u
	}
	withSelector := map[string]string{keys.NamespaceNodeSelector: "region=east", keys.NamespaceUIDRange: "1000/10"}
	tests := []struct {
		name   string
		in     *unstructured.Unstructured
		backup string // "" for an ordinary backup
		config map[string]string
		want   map[string]string
	}{
		{name: "a migration leaves the source's node selector out", in: ns(withSelector), backup: "final", want: map[string]string{keys.NamespaceUIDRange: "1000/10"}},
		{name: "a stage too", in: ns(withSelector), backup: "stage", want: map[string]string{keys.NamespaceUIDRange: "1000/10"}},
		{name: "keepNamespaceNodeSelector keeps it", in: ns(withSelector), backup: "final", config: map[string]string{"keepNamespaceNodeSelector": "true"}, want: withSelector},
		{name: "an ordinary backup is Velero's", in: ns(withSelector), want: withSelector},
		{name: "an empty selector stays", in: ns(map[string]string{keys.NamespaceNodeSelector: ""}), backup: "final", want: map[string]string{keys.NamespaceNodeSelector: ""}},
		{name: "no annotations", in: ns(nil), backup: "final", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			backup := ordinaryBackup()
			if tc.backup != "" {
				backup = migrationBackup(tc.backup)
			}
			got, _, err := NewNamespaceAction(log, configOf(t, tc.config)).Execute(tc.in.DeepCopy(), backup)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.(*unstructured.Unstructured).GetAnnotations())
		})
	}
}
