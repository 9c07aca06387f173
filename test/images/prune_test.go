package images

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPruneStale(t *testing.T) {
	old, fresh := time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name string
		dirs map[string]time.Time // under oci/, last used
		want []string             // what is left
	}{
		{
			name: "old images of the name go, fresh ones stay",
			dirs: map[string]time.Time{"ferry-datamover-0123456789abcdef": old, "ferry-datamover-fedcba9876543210": fresh},
			want: []string{"ferry-datamover-fedcba9876543210"},
		},
		{
			name: "other names stay, even old and sharing a prefix",
			dirs: map[string]time.Time{"ferry-datamover-x-0123456789abcdef": old, "ferry-plugins-0123456789abcdef": old},
			want: []string{"ferry-datamover-x-0123456789abcdef", "ferry-plugins-0123456789abcdef"},
		},
		{
			name: "what is not an image key stays",
			dirs: map[string]time.Time{"ferry-datamover-notakey": old, "ferry-datamover-0123456789abcdeg": old},
			want: []string{"ferry-datamover-0123456789abcdeg", "ferry-datamover-notakey"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oci := filepath.Join(t.TempDir(), "oci")
			for d, used := range tc.dirs {
				p := filepath.Join(oci, d)
				require.NoError(t, os.MkdirAll(filepath.Join(p, "blobs"), 0o755))
				require.NoError(t, os.Chtimes(p, used, used))
			}
			require.NoError(t, pruneStale(oci, "ferry-datamover", staleAfter))
			entries, err := os.ReadDir(oci)
			require.NoError(t, err)
			var left []string
			for _, e := range entries {
				left = append(left, e.Name())
			}
			sort.Strings(left)
			assert.Equal(t, tc.want, left)
		})
	}
	require.NoError(t, pruneStale(filepath.Join(t.TempDir(), "missing"), "x", staleAfter), "no cache yet")
}
