package dataplane

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-dev/ferry/internal/treediff"
)

// restageChange is one kind of change between two passes.
type restageChange struct {
	name string
	// setup runs on the source before the first copy.
	setup func(t *testing.T, src string)
	// change runs after the first copy (dst is the target, for changes behind ferry's back).
	change func(t *testing.T, src, dst string)
	// fallback is why the second pass must copy the whole volume; empty: it sends a list.
	fallback string
	// listed is how many paths the list holds (-1: not checked).
	listed int
	// rootOnly: the change needs a server that is root (owners).
	rootOnly bool
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

// restageChanges are the kinds of change a re-stage must carry over exactly.
var restageChanges = []restageChange{
	{name: "nothing", change: func(*testing.T, string, string) {}, listed: 0},
	{name: "new file", listed: 2, change: func(t *testing.T, src, _ string) { writeFile(t, src+"/a/new", "new") }},
	{name: "new tree", listed: 4, change: func(t *testing.T, src, _ string) {
		writeFile(t, src+"/n/m/one", "1")
		writeFile(t, src+"/n/two", "2")
	}},
	{name: "deleted file", listed: 2, change: func(t *testing.T, src, _ string) { require.NoError(t, os.Remove(src+"/a/y")) }},
	{name: "deleted tree", listed: 1, change: func(t *testing.T, src, _ string) { require.NoError(t, os.RemoveAll(src+"/d")) }},
	{name: "renamed", listed: 3, change: func(t *testing.T, src, _ string) { require.NoError(t, os.Rename(src+"/a/x", src+"/a/x2")) }},
	{name: "same size, same second", listed: 1, change: func(t *testing.T, src, _ string) {
		var st unix.Stat_t
		require.NoError(t, unix.Stat(src+"/a/x", &st))
		require.NoError(t, os.WriteFile(src+"/a/x", make([]byte, st.Size), 0o644))
		ts := unix.Timespec{Sec: st.Mtim.Sec, Nsec: (st.Mtim.Nsec + 1) % 1e9}
		require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, src+"/a/x", []unix.Timespec{ts, ts}, 0))
	}},
	{name: "chmod", listed: 1, change: func(t *testing.T, src, _ string) { require.NoError(t, os.Chmod(src+"/a/y", 0o600)) }},
	{name: "chmod directory", listed: 1, change: func(t *testing.T, src, _ string) { require.NoError(t, os.Chmod(src+"/a/b", 0o711)) }},
	{name: "chown", listed: 1, rootOnly: true, change: func(t *testing.T, src, _ string) { require.NoError(t, os.Lchown(src+"/top", 4321, 4321)) }},
	{name: "mtime", listed: 1, change: func(t *testing.T, src, _ string) { setTimes(t, src+"/c/w", time.Unix(1e9, 5)) }},
	{name: "symlink target", listed: 1, change: func(t *testing.T, src, _ string) {
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(src+"/lnk", &st))
		require.NoError(t, os.Remove(src+"/lnk"))
		require.NoError(t, os.Symlink("c/w", src+"/lnk"))
		// The same mtime as before: only the target tells.
		ts := []unix.Timespec{st.Mtim, st.Mtim}
		require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, src+"/lnk", ts, unix.AT_SYMLINK_NOFOLLOW))
	}},
	{name: "file becomes directory", listed: 2, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.Remove(src+"/top"))
		writeFile(t, src+"/top/in", "in")
	}},
	{name: "directory becomes file", listed: 1, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.RemoveAll(src+"/d"))
		writeFile(t, src+"/d", "was a directory")
	}},
	{name: "file becomes symlink", listed: 2, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.Remove(src+"/a/y"))
		require.NoError(t, os.Symlink("x", src+"/a/y"))
	}},
	{name: "directory becomes symlink", listed: 2, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.RemoveAll(src+"/a/b"))
		require.NoError(t, os.Symlink("../c", src+"/a/b"))
	}},
	{name: "symlink becomes directory", listed: 2, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.Remove(src+"/lnk"))
		writeFile(t, src+"/lnk/f", "f")
	}},
	{name: "fifo becomes file", listed: 1, change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.Remove(src+"/fifo"))
		writeFile(t, src+"/fifo", "now a file")
	}},
	{name: "target changed behind ferry's back", listed: 4, change: func(t *testing.T, _, dst string) {
		require.NoError(t, os.WriteFile(dst+"/a/x", []byte("tampered"), 0o644))
		require.NoError(t, os.Remove(dst+"/c/w"))
		require.NoError(t, os.WriteFile(dst+"/extra", []byte("not on the source"), 0o644))
	}},
	{name: "xattr added", fallback: "ACLs or extended attributes", change: func(t *testing.T, src, _ string) {
		require.NoError(t, unix.Setxattr(src+"/a/x", "user.k", []byte("v"), 0))
	}},
	{name: "hard link added", fallback: "hard links", change: func(t *testing.T, src, _ string) {
		require.NoError(t, os.Link(src+"/a/x", src+"/c/hl"))
	}},
	{name: "hard link removed", fallback: "hard links",
		setup:  func(t *testing.T, src string) { require.NoError(t, os.Link(src+"/a/x", src+"/c/hl")) },
		change: func(t *testing.T, src, _ string) { require.NoError(t, os.Remove(src+"/c/hl")) }},
}

// restageBase is the source every change starts from.
func restageBase(t *testing.T, src string, owners bool) {
	t.Helper()
	buildTree(t, src, "a/x=100", "a/y=200", "a/b/z=300", "c/w=10", "top=5", "lnk->a/x", "d/e/f=1", "empty/")
	require.NoError(t, unix.Mkfifo(src+"/fifo", 0o644))
	if owners {
		require.NoError(t, os.Lchown(src+"/c/w", 1234, 1234))
	}
	// Times in the past, so a change "now" always differs.
	require.NoError(t, filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		require.NoError(t, err)
		setTimes(t, p, time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC))
		return nil
	}))
}

// TestRestageEachChange: after each kind of change, a re-stage leaves the target equal to the
// source (treediff: contents, types, link targets, modes, mtimes, owners, hard links, xattrs),
// by a list of exactly the differing paths where the comparison can decide, and by the
// whole-volume plan where it cannot. Both server forms: root, and uid 65534 on an fsGroup
// volume (owners are not set, link targets go through rsync's munging).
func TestRestageEachChange(t *testing.T) {
	for _, root := range []bool{true, false} {
		t.Run(map[bool]string{true: "root server", false: "uid 65534 server"}[root], func(t *testing.T) {
			var base, tmp, bin string
			if root {
				requireTools(t)
				base = t.TempDir()
			} else {
				base, tmp, bin = unprivilegedBase(t)
			}
			for i, c := range restageChanges {
				if c.rootOnly && !root {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					dir := filepath.Join(base, fmt.Sprint(i))
					src := filepath.Join(dir, "src")
					restageBase(t, src, root)
					if c.setup != nil {
						c.setup(t, src)
					}
					var dst string
					// Against the unprivileged server the files are 65534's, as an app running
					// as that user writes them.
					ownByNobody := func() {
						require.NoError(t, filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
							require.NoError(t, err)
							return os.Lchown(p, nobody, nobody)
						}))
					}
					if root {
						dst = filepath.Join(dir, "dst")
						require.NoError(t, os.Mkdir(dst, 0o755))
					} else {
						ownByNobody()
						dst = fsGroupVolume(t, filepath.Join(dir, "dst"))
					}
					pass := func(n int, hook func(*restagePlan, string)) sendResult {
						passDir := filepath.Join(dir, fmt.Sprint("pass", n))
						tweak := func(o *SendOptions) { o.onCompare = hook }
						if root {
							srv := startServer(t, passDir, dst)
							r := send(t, srv, passDir, src, tweak)
							require.NoError(t, r.err)
							require.NoError(t, srv.wait(t))
							return r
						}
						require.NoError(t, os.MkdirAll(passDir, 0o755))
						addr, serve := startUnprivilegedServer(t, bin, tmp, filepath.Join(passDir, "certs"), dst)
						r := send(t, &server{addr: addr}, passDir, src, tweak)
						require.NoError(t, r.err)
						require.NoError(t, serve.Wait())
						return r
					}
					pass(1, func(*restagePlan, string) { t.Error("a first copy compares nothing") })
					c.change(t, src, dst)
					if !root {
						ownByNobody()
					}
					var plan *restagePlan
					fallback := "(not compared)"
					r := pass(2, func(p *restagePlan, why string) { plan, fallback = p, why })

					opts := treediff.All()
					opts.Root = root
					opts.Skip = skipLostFound
					require.NoError(t, treediff.Equal(src, dst, opts), "after the re-stage")
					require.Equal(t, c.fallback, fallback, "how the re-stage was planned")
					if c.fallback != "" {
						return
					}
					require.NotNil(t, plan)
					if c.listed >= 0 {
						assert.Len(t, plan.Entries, c.listed, "paths listed: %q", plan.Entries)
					}
					if c.listed == 0 {
						assert.Zero(t, r.done.FilesTransferred)
						assert.Zero(t, r.done.BytesSent, "no rsync ran")
					}
					files, bytes := int64(0), int64(0)
					require.NoError(t, filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
						require.NoError(t, err)
						if d.Type().IsRegular() {
							info, err := d.Info()
							require.NoError(t, err)
							files, bytes = files+1, bytes+info.Size()
						}
						return nil
					}))
					assert.Equal(t, files, r.done.Files, "the done report counts the whole volume")
					assert.Equal(t, bytes, r.done.BytesTotal)
				})
			}
		})
	}
}
