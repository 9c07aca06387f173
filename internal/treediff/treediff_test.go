package treediff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// baseTree writes a small tree with every kind of entry the comparison looks at.
func baseTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(dir, "d/sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "d/file"), []byte("content"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "d/sub/empty"), nil, 0o600))
	must(os.Link(filepath.Join(dir, "d/file"), filepath.Join(dir, "link")))
	must(os.Symlink("d/file", filepath.Join(dir, "sym")))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	must(f.Truncate(8 << 20))
	_, err = f.WriteAt([]byte("end"), 8<<20-3)
	must(err)
	must(f.Close())
	old := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, p := range []string{"d/file", "d/sub/empty", "sparse", "d/sub", "d", "."} {
		must(os.Chtimes(filepath.Join(dir, p), old, old))
	}
	must(unix.Lutimes(filepath.Join(dir, "sym"), []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}))
}

// copyTree makes an exact copy with cp -a (coreutils preserves everything compared here).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, os.RemoveAll(dst))
	out, err := execCommand("cp", "-a", "--sparse=always", src, dst)
	require.NoError(t, err, out)
}

func TestCompare(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, dst string)
		opts   Options
		want   string // substring of every expected difference; "" for none
		count  int    // expected differences when want is set (default 1)
	}{
		{name: "identical copy", change: func(*testing.T, string) {}, opts: All()},
		{name: "content of a hard-linked file", want: `: content`, count: 2, opts: All(), change: func(t *testing.T, dst string) {
			p := filepath.Join(dst, "d/file")
			st := stat(t, p)
			require.NoError(t, os.WriteFile(p, []byte("CONTENT"), 0o644))
			require.NoError(t, os.Chtimes(p, time.Unix(st.Mtim.Unix()), time.Unix(st.Mtim.Unix())))
		}},
		{name: "missing", want: `"d/sub/empty": missing in copy`, opts: All(), change: func(t *testing.T, dst string) {
			require.NoError(t, os.Remove(filepath.Join(dst, "d/sub/empty")))
			old := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
			require.NoError(t, os.Chtimes(filepath.Join(dst, "d/sub"), old, old))
		}},
		{name: "extra", want: `"extra": extra in copy`, opts: Options{}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.WriteFile(filepath.Join(dst, "extra"), nil, 0o644))
		}},
		{name: "mode", want: `"d/sub/empty": mode: source 0600, copy 0640`, opts: Options{Modes: true}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.Chmod(filepath.Join(dst, "d/sub/empty"), 0o640))
		}},
		{name: "mtime of a directory", want: `"d": mtime`, opts: Options{Mtimes: true}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.Chtimes(filepath.Join(dst, "d"), time.Now(), time.Now()))
		}},
		{name: "symlink target", want: `"sym": symlink target: source d/file, copy elsewhere`, opts: Options{}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.Remove(filepath.Join(dst, "sym")))
			require.NoError(t, os.Symlink("elsewhere", filepath.Join(dst, "sym")))
		}},
		{name: "hard link broken", want: `hard links: source [d/file, link], copy (none)`, count: 2, opts: Options{Links: true}, change: func(t *testing.T, dst string) {
			p := filepath.Join(dst, "link")
			require.NoError(t, os.Remove(p))
			require.NoError(t, os.WriteFile(p, []byte("content"), 0o644))
		}},
		{name: "holes filled", want: `"sparse": holes filled`, opts: Options{Sparse: true}, change: func(t *testing.T, dst string) {
			p := filepath.Join(dst, "sparse")
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.Remove(p))
			require.NoError(t, os.WriteFile(p, data, 0o644))
		}},
		{name: "xattr", want: `"d/sub/empty": xattr user.test`, opts: Options{Xattrs: true}, change: func(t *testing.T, dst string) {
			require.NoError(t, unix.Setxattr(filepath.Join(dst, "d/sub/empty"), "user.test", []byte("v"), 0), "user xattrs on the test filesystem")
		}},
		{name: "root mode ignored unless asked", opts: Options{Modes: true}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.Chmod(dst, 0o700))
		}},
		{name: "root mode compared when asked", want: `".": mode`, opts: Options{Modes: true, Root: true}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.Chmod(dst, 0o700))
		}},
		{name: "skipped entries", opts: Options{Skip: func(rel string) bool { return rel == "d" }}, change: func(t *testing.T, dst string) {
			require.NoError(t, os.RemoveAll(filepath.Join(dst, "d")))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
			require.NoError(t, os.Mkdir(src, 0o755))
			baseTree(t, src)
			copyTree(t, src, dst)
			tc.change(t, dst)
			diffs, err := Compare(src, dst, tc.opts)
			require.NoError(t, err)
			if tc.want == "" {
				assert.Empty(t, diffs)
				assert.NoError(t, Equal(src, dst, tc.opts))
				return
			}
			var got []string
			for _, d := range diffs {
				got = append(got, d.String())
			}
			require.Len(t, diffs, max(tc.count, 1), "differences: %v", got)
			for _, d := range got {
				assert.Contains(t, d, tc.want)
			}
			assert.ErrorContains(t, Equal(src, dst, tc.opts), tc.want)
		})
	}
}

func TestCompareMissingTree(t *testing.T) {
	_, err := Compare(filepath.Join(t.TempDir(), "nope"), t.TempDir(), All())
	assert.Error(t, err)
}

func stat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Lstat(p, &st))
	return st
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
