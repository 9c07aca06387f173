package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-dev/ferry/internal/treediff"
)

// oddNames are file names a volume may hold and a careless transfer would mangle.
var oddNames = []string{
	"with space", " leading space", "trailing space ", "new\nline", "#hash", ";semicolon", "-dash",
	"ünïcødé-日本語", "star*", "question?", "[brackets]", `back\slash`, "quote'\"", "percent%HOME%", "tab\there",
}

// sourceTree builds the tree the round-trip test sends. crossLinks adds hard links between
// directories (the planner then splits at the top level only); without them the planner is
// told to split finely, so shallow units and their filter rules are exercised.
func sourceTree(t *testing.T, src string, crossLinks, bigFile bool) {
	t.Helper()
	root := os.Geteuid() == 0
	mk := func(rel string, mode os.FileMode) {
		require.NoError(t, os.MkdirAll(filepath.Join(src, rel), 0o755))
		require.NoError(t, os.Chmod(filepath.Join(src, rel), mode))
	}
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(src, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	// Nested directories with files at every level.
	for i, d := range []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "f", "f/g", "h"} {
		mk(d, 0o755)
		for j := 0; j < 3; j++ {
			write(fmt.Sprintf("%s/file%d", d, j), strings.Repeat(fmt.Sprintf("%s-%d ", d, j), 100*(i+1)), 0o644)
		}
	}
	// Empty files and an empty directory.
	write("empty", "", 0o644)
	write("a/b/empty", "", 0o600)
	mk("emptydir", 0o750)
	// Modes.
	write("modes/exec", "#!/bin/sh\n", 0o755)
	write("modes/private", "secret", 0o600)
	write("modes/readonly", "ro", 0o444)
	mk("modes/sticky", 0o1777)
	write("modes/sticky/x", "x", 0o666)
	mk("modes/setgid", 0o2775)
	write("modes/setgid/y", "y", 0o664)
	if root {
		write("modes/setuid", "suid", 0o4755)
	}
	mk("modes/readonly-dir", 0o755)
	write("modes/readonly-dir/inside", "in", 0o644)
	// Odd names, as files and as a directory holding a file.
	for i, n := range oddNames {
		write("names/"+n, fmt.Sprintf("name %d", i), 0o644)
	}
	write("names/dir with\nnewline/#inner ", "inner", 0o644)
	write("#top-hash", "top", 0o644)
	write("top file", "top", 0o644)
	// Symlinks: relative, absolute, dangling, to a directory, with an odd target.
	require.NoError(t, os.Symlink("a/file0", filepath.Join(src, "rel-link")))
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(src, "abs-link")))
	require.NoError(t, os.Symlink("nowhere/at all", filepath.Join(src, "a/dangling")))
	require.NoError(t, os.Symlink("../f", filepath.Join(src, "h/dir-link")))
	require.NoError(t, os.Symlink("new\nline target", filepath.Join(src, "names/odd-link")))
	// Hard links within one directory, and (optionally) across directories.
	write("links/one", "linked content", 0o640)
	require.NoError(t, os.Link(filepath.Join(src, "links/one"), filepath.Join(src, "links/two")))
	if crossLinks {
		require.NoError(t, os.Link(filepath.Join(src, "links/one"), filepath.Join(src, "a/b/c/three")))
		require.NoError(t, os.Link(filepath.Join(src, "f/file0"), filepath.Join(src, "top-link")))
	}
	// Sparse files: large apparent size, little data; one over the large-file size.
	for _, sp := range []struct {
		name string
		size int64
	}{{"sparse/small.img", 8 << 20}, {"sparse/large.img", 96 << 20}} {
		p := filepath.Join(src, sp.name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		f, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, f.Truncate(sp.size))
		_, err = f.WriteAt([]byte(strings.Repeat("data", 1024)), sp.size/3)
		require.NoError(t, err)
		_, err = f.WriteAt([]byte("end"), sp.size-3)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	// A FIFO, and as root a device node.
	require.NoError(t, unix.Mkfifo(filepath.Join(src, "special-fifo"), 0o640))
	if root {
		require.NoError(t, unix.Mknod(filepath.Join(src, "special-null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	// A large file: its own in-place stream.
	if bigFile {
		mk("big", 0o755)
		writeRandom(t, filepath.Join(src, "big/data.bin"), 200<<20, 1)
		writeRandom(t, filepath.Join(src, "big/second.bin"), 70<<20, 2)
	}
	// Extended attributes and ACLs.
	require.NoError(t, unix.Setxattr(filepath.Join(src, "a/file1"), "user.ferry.test", []byte("value"), 0))
	require.NoError(t, unix.Setxattr(filepath.Join(src, "f"), "user.ferry.dir", []byte("dir value"), 0))
	run(t, "setfacl", "-m", "u:1234:rwx,g:5678:r", filepath.Join(src, "a/file2"))
	run(t, "setfacl", "-d", "-m", "g:5678:rx", filepath.Join(src, "f/g"))
	// Owners (root only).
	if root {
		require.NoError(t, os.Lchown(filepath.Join(src, "a/file0"), 1234, 5678))
		require.NoError(t, os.Lchown(filepath.Join(src, "f"), 4321, 8765))
		require.NoError(t, os.Lchown(filepath.Join(src, "rel-link"), 1111, 2222))
		require.NoError(t, os.Lchown(filepath.Join(src, "links/one"), 99, 99))
		require.NoError(t, os.Lchown(src, 2000, 3000))
	}
	// lost+found at the root belongs to the filesystem: it is not transferred.
	write("lost+found/orphan", "not copied", 0o600)
	// Old, distinct mtimes with nanoseconds, directories last (writing into them changes theirs).
	var dirs []string
	i := 0
	require.NoError(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		if fi.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		i++
		setTimes(t, p, time.Date(2019, 5, 1+i%28, i%24, i%60, 7, 123456789+i, time.UTC))
		return nil
	}))
	for j := len(dirs) - 1; j >= 0; j-- {
		setTimes(t, dirs[j], time.Date(2018, 1, 1+j%28, 0, 0, j%60, 987654321, time.UTC))
	}
	require.NoError(t, os.Chmod(filepath.Join(src, "modes/readonly-dir"), 0o555))
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(src, "modes/readonly-dir"), 0o755) })
}

// staleTarget puts what a previous, older copy would have left on the target.
func staleTarget(t *testing.T, dst string) {
	t.Helper()
	for _, p := range []string{"stale.txt", "a/stale-dir/deep/x", "a/b/c/d/e/stale", "names/gone"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dst, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dst, p), []byte("stale"), 0o644))
	}
	// A directory where the source has a file, and a file where it has a directory.
	require.NoError(t, os.MkdirAll(filepath.Join(dst, "empty/was-a-dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "emptydir"), []byte("was a file"), 0o644))
	// The target filesystem's own lost+found is left alone.
	require.NoError(t, os.MkdirAll(filepath.Join(dst, "lost+found"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "lost+found/keep"), []byte("target's"), 0o600))
}

func skipLostFound(rel string) bool { return rel == "lost+found" }

// countInodes counts the distinct regular files (inodes) below root, lost+found aside.
func countInodes(t *testing.T, root string) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	require.NoError(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		if rel, _ := filepath.Rel(root, p); rel == "lost+found" {
			return filepath.SkipDir
		}
		if fi.Mode().IsRegular() {
			seen[fi.Sys().(*syscall.Stat_t).Ino] = true
		}
		return nil
	}))
	return int64(len(seen))
}

func TestSendRoundTrip(t *testing.T) {
	cases := []struct {
		name       string
		crossLinks bool
		bigFile    bool
		unitWeight int64
	}{
		// Hard links across directories: split at the top level; with the 200 MiB file.
		{name: "cross-directory hard links and a 200 MiB file", crossLinks: true, bigFile: true},
		// No cross links: tiny units, so every directory is its own unit with filter rules.
		{name: "fine split", unitWeight: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
			require.NoError(t, os.Mkdir(src, 0o755))
			require.NoError(t, os.Mkdir(dst, 0o755))
			sourceTree(t, src, tc.crossLinks, tc.bigFile)
			staleTarget(t, dst)

			srv := startServer(t, base, dst)
			r := send(t, srv, base, src, func(o *SendOptions) { o.Streams = 4; o.planUnitWeight = tc.unitWeight })
			require.NoError(t, r.err)
			require.NoError(t, srv.wait(t), "serve exits 0 once the client reported completion")

			opts := treediff.All()
			opts.Owners = os.Geteuid() == 0
			opts.Root = os.Geteuid() == 0
			opts.Skip = skipLostFound
			require.NoError(t, treediff.Equal(src, dst, opts))
			keep, err := os.ReadFile(filepath.Join(dst, "lost+found/keep"))
			require.NoError(t, err, "the target's lost+found survives")
			assert.Equal(t, "target's", string(keep))
			_, err = os.Stat(filepath.Join(dst, "lost+found/orphan"))
			assert.True(t, errors.Is(err, os.ErrNotExist), "the source's lost+found is not copied")

			assert.Equal(t, 1, r.done.Attempts)
			assert.Positive(t, r.done.FilesTransferred)
			assert.Equal(t, countInodes(t, src), r.done.FilesTransferred, "a first copy moves every regular file (hard links once)")
			assert.Positive(t, r.count(ReportProgress))
			last := r.reports[len(r.reports)-1]
			assert.Equal(t, r.done, last)

			// Again, unchanged, verified: nothing moves, nothing changes, and every file and
			// attribute of this tree compares equal.
			srv = startServer(t, base+"/again", dst)
			r = send(t, srv, base+"/again", src, func(o *SendOptions) { o.Streams = 4; o.planUnitWeight = tc.unitWeight; o.Verify = true })
			require.NoError(t, r.err)
			require.NoError(t, srv.wait(t))
			assert.Zero(t, r.done.FilesTransferred, "an unchanged source moves no file")
			require.NotNil(t, r.done.Verified)
			assert.Equal(t, Verification{Files: r.done.Files, Bytes: r.done.BytesTotal}, *r.done.Verified)
			require.NoError(t, treediff.Equal(src, dst, opts))
		})
	}
}

// TestSendRestageMovesOnlyChanges: the stage → stage → final flow. After 1 % of the files
// changed, a second run transfers exactly those, by rsync's own count.
func TestSendRestageMovesOnlyChanges(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	const dirs, perDir = 10, 100
	for d := 0; d < dirs; d++ {
		require.NoError(t, os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%02d", d)), 0o755))
		for f := 0; f < perDir; f++ {
			writeRandom(t, filepath.Join(src, fmt.Sprintf("d%02d/f%03d", d, f)), 4096, uint64(d*perDir+f))
		}
	}
	require.NoError(t, os.Mkdir(dst, 0o755))
	srv := startServer(t, base+"/1", dst)
	first := send(t, srv, base+"/1", src, nil)
	require.NoError(t, first.err)
	require.NoError(t, srv.wait(t))
	require.Equal(t, int64(dirs*perDir), first.done.FilesTransferred)
	opts := treediff.All()
	opts.Root = os.Geteuid() == 0
	require.NoError(t, treediff.Equal(src, dst, opts), "after the first copy")

	// 1 % of the files change: new content, new mtime.
	changed := 0
	for d := 0; d < dirs; d++ {
		p := filepath.Join(src, fmt.Sprintf("d%02d/f%03d", d, 7*d))
		writeRandom(t, p, 4096, uint64(100000+d))
		setTimes(t, p, time.Now().Add(time.Duration(d)*time.Second))
		changed++
	}
	// …and one is deleted, which the copy must mirror.
	require.NoError(t, os.Remove(filepath.Join(src, "d05/f099")))

	srv = startServer(t, base+"/2", dst)
	second := send(t, srv, base+"/2", src, nil)
	require.NoError(t, second.err)
	require.NoError(t, srv.wait(t))
	assert.Equal(t, int64(changed), second.done.FilesTransferred, "exactly the changed files moved")
	assert.Equal(t, int64(dirs*perDir-1), second.done.Files)
	// The changed files' data plus the file lists; far below the volume's size.
	assert.Less(t, second.done.BytesSent, first.done.BytesSent/10,
		"bytes on the wire: %d after the change vs %d for the first copy", second.done.BytesSent, first.done.BytesSent)
	require.NoError(t, treediff.Equal(src, dst, opts))
}

// TestSendRetriesAfterConnectionCut: every connection is cut (RST) in the middle of the data;
// send retries, resumes, and the copy is exact.
func TestSendRetriesAfterConnectionCut(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "small"), 0o755))
	writeRandom(t, filepath.Join(src, "large.bin"), 150<<20, 7)
	for i := 0; i < 200; i++ {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("small/%03d", i)), 8192, uint64(i))
	}
	require.NoError(t, os.Mkdir(dst, 0o755))
	srv := startServer(t, base, dst)
	proxy := startCutProxy(t, srv.addr, 40<<20)

	r := send(t, &server{addr: proxy.addr()}, base, src, func(o *SendOptions) { o.Streams = 2 })
	require.NoError(t, r.err)
	require.NoError(t, srv.wait(t))
	assert.Equal(t, int32(1), proxy.cuts.Load(), "the connection was cut once")
	assert.GreaterOrEqual(t, r.done.Attempts, 2)
	require.Positive(t, r.count(ReportRetry), "the cut was reported as a retry")
	for _, e := range r.reports {
		if e.Type == ReportRetry {
			assert.Contains(t, e.Error, "rsync exited with code")
			assert.Positive(t, e.BackoffSeconds)
		}
	}
	require.NoError(t, treediff.Equal(src, dst, treediff.All()))
}

// TestSendGivesUp: a server that never answers is retried MaxAttempts times, then send fails
// with rsync's code and tells why; a refused certificate is not retried at all.
func TestSendGivesUp(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	require.NoError(t, os.MkdirAll(src, 0o755))
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))

	t.Run("nobody listening", func(t *testing.T) {
		r := send(t, &server{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}, base, src, func(o *SendOptions) { o.MaxAttempts = 3 })
		require.Error(t, r.err)
		assert.Equal(t, 2, r.count(ReportRetry))
		last := r.reports[len(r.reports)-1]
		assert.Equal(t, 3, last.Attempt)
		assert.Contains(t, last.Error, "giving up after 3 attempts")
		assert.Contains(t, last.Error, "Connection refused")
		var rerr *RsyncError
		require.ErrorAs(t, r.err, &rerr)
		assert.Equal(t, rerr.Code, last.ExitCode)
		assert.NotZero(t, last.ExitCode)
	})

	t.Run("server of another transfer", func(t *testing.T) {
		dst := filepath.Join(base, "dst")
		require.NoError(t, os.MkdirAll(dst, 0o755))
		srv := startServer(t, filepath.Join(base, "other"), dst)
		r := send(t, srv, base, src, func(o *SendOptions) { o.MaxAttempts = 5 })
		require.Error(t, r.err)
		assert.Zero(t, r.count(ReportRetry), "a certificate problem is not retried")
		assert.Contains(t, r.reports[len(r.reports)-1].Error, "certificate")
		entries, err := os.ReadDir(dst)
		require.NoError(t, err)
		assert.Empty(t, entries, "nothing written")
	})

	t.Run("bad input", func(t *testing.T) {
		r := send(t, &server{addr: "127.0.0.1:1"}, base, filepath.Join(base, "missing"), nil)
		require.Error(t, r.err)
		assert.Contains(t, r.err.Error(), "does not exist")
		assert.Equal(t, 1, r.reports[len(r.reports)-1].ExitCode)
	})
}

// TestRunRsyncVanishedIsWarning uses a stand-in for rsync (unit test) that exits 24 the way
// rsync does when the application deletes files during a stage.
func TestRunRsyncVanishedIsWarning(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "rsync")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho 'file has vanished: \"/src/x\"' >&2\nexit 24\n"), 0o755))
	s := &sender{rsync: fake, log: testLogger(t, "send")}
	_, vanished, err := s.runRsync(context.Background(), nil, s.log, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, vanished)

	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho 'rsync: connection unexpectedly closed' >&2\nexit 12\n"), 0o755))
	_, _, err = s.runRsync(context.Background(), nil, s.log, nil)
	var rerr *RsyncError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 12, rerr.Code)
	assert.Contains(t, rerr.Detail, "connection unexpectedly closed")
	assert.True(t, rerr.Transient())
}

// TestSendRemovesStaleAttributes: an ACL and an xattr copied by an earlier pass and since
// removed from the source are removed from the target too, although the source now has none
// (the server tells the client that the target still has some).
func TestSendRemovesStaleAttributes(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	buildTree(t, src, "d/file=10", "other=5")
	require.NoError(t, os.Mkdir(dst, 0o755))
	run(t, "setfacl", "-m", "u:1234:rw", filepath.Join(src, "d/file"))
	require.NoError(t, unix.Setxattr(filepath.Join(src, "other"), "user.note", []byte("x"), 0))
	for i, step := range []string{"with attributes", "attributes removed"} {
		srv := startServer(t, filepath.Join(base, strconv.Itoa(i)), dst)
		r := send(t, srv, filepath.Join(base, strconv.Itoa(i)), src, nil)
		require.NoError(t, r.err, step)
		require.NoError(t, srv.wait(t))
		require.NoError(t, treediff.Equal(src, dst, treediff.All()), step)
		if i == 0 {
			run(t, "setfacl", "-b", filepath.Join(src, "d/file"))
			require.NoError(t, unix.Removexattr(filepath.Join(src, "other"), "user.note"))
		}
	}
	_, err := unix.Getxattr(filepath.Join(dst, "other"), "user.note", nil)
	assert.ErrorIs(t, err, unix.ENODATA, "the stale xattr is gone")
}

// TestSendIPv6: both ends on an IPv6 literal (stunnel wants it without brackets).
func TestSendIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	require.NoError(t, err, "IPv6 loopback")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	buildTree(t, src, "a/b=3", "c=4")
	require.NoError(t, os.Mkdir(dst, 0o755))
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))
	addr := fmt.Sprintf("[::1]:%d", port)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- Serve(ctx, ServeOptions{Dir: dst, Listen: addr, CertDir: filepath.Join(base, "certs", ServerDir), Log: testLogger(t, "serve")})
	}()
	r := send(t, &server{addr: addr}, base, src, nil)
	require.NoError(t, r.err)
	require.NoError(t, <-done)
	require.NoError(t, treediff.Equal(src, dst, treediff.All()))
}

// TestSendEmptyVolume: an empty source empties the target (but its lost+found).
func TestSendEmptyVolume(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	require.NoError(t, os.Mkdir(src, 0o755))
	buildTree(t, dst, "old/file=3", "lost+found/")
	srv := startServer(t, base, dst)
	r := send(t, srv, base, src, nil)
	require.NoError(t, r.err)
	require.NoError(t, srv.wait(t))
	assert.Zero(t, r.done.Files)
	entries, err := os.ReadDir(dst)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "lost+found", entries[0].Name())
}

// TestSendWithSharedCertificates: a client whose certificates any user may read (a non-root
// transfer pod's Secret volume: root's files, mode 0444) and a server whose group may (its
// fsGroup's, 0440) use private copies, so stunnel has nothing to warn about.
func TestSendWithSharedCertificates(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	buildTree(t, src, "a/b=3", "c=4")
	require.NoError(t, os.Mkdir(dst, 0o755))
	var logs syncBuffer
	srv := startServerWith(t, base, dst, func(o *ServeOptions) {
		for dir, mode := range map[string]os.FileMode{ClientDir: 0o444, ServerDir: 0o440} {
			for _, f := range []string{CAFile, CertFile, KeyFile} {
				require.NoError(t, os.Chmod(filepath.Join(base, "certs", dir, f), mode))
			}
		}
		l := logrus.New()
		l.SetOutput(&logs)
		o.Log = l
	})
	r := send(t, srv, base, src, func(o *SendOptions) {
		l := logrus.New()
		l.SetOutput(&logs)
		o.Log = l
	})
	require.NoError(t, r.err)
	require.NoError(t, srv.wait(t))
	require.NoError(t, treediff.Equal(src, dst, treediff.All()))
	assert.Contains(t, logs.String(), "level=info msg=sending", "the client's logs were captured")
	assert.Contains(t, logs.String(), "serving: waiting for the client", "the server's logs were captured")
	assert.NotContains(t, logs.String(), "Insecure file permissions")
}
