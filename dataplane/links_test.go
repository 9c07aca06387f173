package dataplane

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
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

// The servers of these tests run as separate processes (this test binary, re-run by
// TestHelperProcess), in the forms a server pod can have.

// serverForm is how a test's server runs.
type serverForm struct {
	name    string
	uid     int  // 0 or nobody
	noMknod bool // root without CAP_MKNOD (a pod that does not add it)
}

var (
	asRoot        = serverForm{name: "root"}
	asRootNoMknod = serverForm{name: "root without CAP_MKNOD", noMknod: true}
	asNobody      = serverForm{name: "uid 65534", uid: nobody}
)

// helperSetup is a base directory uid 65534 can use, this test binary copied into it, and one
// transfer's certificates under base/certs (owned by 65534).
type helperSetup struct {
	base, tmp, bin, certDir string
	serves                  int
}

func newHelperSetup(t *testing.T) *helperSetup {
	t.Helper()
	base, tmp, bin := unprivilegedBase(t)
	h := &helperSetup{base: base, tmp: tmp, bin: bin, certDir: filepath.Join(base, "certs")}
	writeNobodyCerts(t, h.certDir)
	return h
}

// serve starts a server in form on dst; wait returns its exit.
func (h *helperSetup) serve(t *testing.T, dst string, form serverForm) (srv *server, wait func() error) {
	t.Helper()
	h.serves++
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ready := filepath.Join(h.tmp, "ready-"+strconv.Itoa(h.serves))
	raw, err := json.Marshal(helperArgs{Role: "serve", Dir: dst, Addr: addr, CertDir: filepath.Join(h.certDir, ServerDir),
		ReadyFile: ready})
	require.NoError(t, err)
	args := []string{h.bin, "-test.run=^TestHelperProcess$"}
	if form.noMknod {
		// Out of the bounding set (and the inheritable one), CAP_MKNOD is gone for good for
		// the helper and everything it starts, though it runs as uid 0.
		args = append([]string{"setpriv", "--bounding-set=-mknod", "--inh-caps=-mknod", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw), "TMPDIR="+h.tmp, "HOME="+h.tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if form.uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(form.uid), Gid: uint32(form.uid)}
	}
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		exited <- nil
	})
	require.Eventually(t, func() bool {
		select {
		case err := <-exited:
			exited <- err
			return true
		default:
		}
		_, err := os.Stat(ready)
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "serve (%s) did not start", form.name)
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err, "serve (%s) exited at start", form.name)
	default:
	}
	wait = func() error {
		select {
		case err := <-exited:
			exited <- err
			return err
		case <-time.After(60 * time.Second):
			t.Fatal("serve did not exit within 60s after the client finished")
			return nil
		}
	}
	return &server{addr: addr}, wait
}

// entry makers for test trees: owner and mtime set without following links.

func mkLink(t *testing.T, root, rel, target string, uid int, when time.Time) {
	t.Helper()
	p := filepath.Join(root, rel)
	_ = os.Remove(p)
	require.NoError(t, os.Symlink(target, p))
	require.NoError(t, os.Lchown(p, uid, uid+1))
	setTimes(t, p, when)
}

func mkHardLink(t *testing.T, root, existing, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	_ = os.Remove(p)
	// linkat without AT_SYMLINK_FOLLOW: a second name for the symlink itself.
	require.NoError(t, unix.Linkat(unix.AT_FDCWD, filepath.Join(root, existing), unix.AT_FDCWD, p, 0))
}

// setDirTimes gives the directories (deepest first) fixed times, after their entries changed.
func setDirTimes(t *testing.T, root string, when time.Time, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		setTimes(t, filepath.Join(root, d), when)
	}
}

// TestSymlinksExact: whatever the server's form, the target's links end up byte-for-byte the
// source's (absolute, dangling, escaping, odd bytes, targets that already look munged, hard
// links among links), with their owners and times, and so do the directories holding them
// (a read-only one included), over three passes that change links in between.
func TestSymlinksExact(t *testing.T) {
	t1 := time.Date(2020, 1, 2, 3, 4, 5, 600700800, time.UTC)
	t2 := time.Date(2022, 6, 7, 8, 9, 10, 111213141, time.UTC)
	for _, form := range []serverForm{asRoot, asNobody} {
		t.Run(form.name, func(t *testing.T) {
			h := newHelperSetup(t)
			src, dst := filepath.Join(h.base, "src"), filepath.Join(h.base, "dst")
			// Owners a root server keeps; an unprivileged one can only keep its own.
			uid := 1234
			if form.uid != 0 {
				uid = form.uid
			}
			for _, d := range []string{"", "dir", "dir/sub", "ro"} {
				require.NoError(t, os.MkdirAll(filepath.Join(src, d), 0o755))
			}
			require.NoError(t, os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o644))
			links := map[string]string{
				"abs":            "/etc/passwd",
				"dangling":       "nowhere/at/all",
				"dir/escaping":   "../../escaping",
				"dir/odd":        "odd \x01\xfe\n\ttarget\\ with ✓",
				"odd-\xfe-name":  "x",
				"dir/sub/munged": "/rsyncd-munged/already",
				"dir/sub/root":   "/",
				"ro/inside":      "../abs",
				"dir/hard1":      "/hard/target",
			}
			for rel, target := range links {
				mkLink(t, src, rel, target, uid, t1)
			}
			mkHardLink(t, src, "dir/hard1", "dir/sub/hard2")
			mkHardLink(t, src, "dir/hard1", "hard3")
			dirs := []string{"dir/sub", "dir", "ro", ""}
			require.NoError(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
				require.NoError(t, err)
				if fi.Mode()&os.ModeSymlink != 0 {
					return nil
				}
				return os.Chown(p, uid, uid+1)
			}))
			if form.uid != 0 {
				require.NoError(t, filepath.Walk(src, func(p string, _ os.FileInfo, err error) error {
					require.NoError(t, err)
					return os.Lchown(p, uid, uid) // 65534 belongs to its own group only
				}))
			}
			require.NoError(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
			setDirTimes(t, src, t1, dirs...)
			require.NoError(t, os.Mkdir(dst, 0o755))
			require.NoError(t, os.Chown(dst, form.uid, form.uid))

			changes := []func(){
				nil,
				// Pass 2: targets changed, a link gone, new ones (one whose target is just the
				// munging prefix, one doubly prefixed), the hard-linked group replaced, a link
				// in the read-only directory changed.
				func() {
					mkLink(t, src, "abs", "/etc/hostname", uid, t2)
					require.NoError(t, os.Remove(filepath.Join(src, "dangling")))
					mkLink(t, src, "dir/new", mungePrefix, uid, t2)
					mkLink(t, src, "dir/sub/double", mungePrefix+mungePrefix+"x", uid, t2)
					for _, p := range []string{"dir/hard1", "dir/sub/hard2", "hard3"} {
						require.NoError(t, os.Remove(filepath.Join(src, p)))
					}
					mkLink(t, src, "dir/sub/hard2", "../../../../other", uid, t2)
					mkHardLink(t, src, "dir/sub/hard2", "hard3")
					require.NoError(t, os.Chmod(filepath.Join(src, "ro"), 0o755))
					mkLink(t, src, "ro/inside", "/ro/elsewhere", uid, t2)
					require.NoError(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
					if form.uid != 0 {
						for _, p := range []string{"abs", "dir/new", "dir/sub/double", "dir/sub/hard2", "ro/inside"} {
							require.NoError(t, os.Lchown(filepath.Join(src, p), uid, uid))
						}
					}
					setDirTimes(t, src, t2, dirs...)
				},
				// Pass 3: nothing but a link's time changed in the source; on the target, the
				// links are left munged, as by a server killed before it restored them (only
				// an unprivileged server munges).
				func() {
					setTimes(t, filepath.Join(src, "dir/odd"), t2)
					if form.uid != 0 {
						n, err := mungeLinks(dst)
						require.NoError(t, err)
						require.Equal(t, 10, n)
					}
				},
			}
			for pass, change := range changes {
				if change != nil {
					change()
				}
				start := time.Now()
				srv, wait := h.serve(t, dst, form)
				r := send(t, srv, h.base, src, func(o *SendOptions) { o.Verify = true })
				require.NoError(t, r.err, "pass %d", pass+1)
				require.NoError(t, wait(), "serve, pass %d", pass+1)
				require.NotNil(t, r.done.Verified)
				assert.Zero(t, r.done.Verified.Mismatches, "pass %d: the verify pass sees the links as the source's", pass+1)
				t.Logf("pass %d: %s", pass+1, time.Since(start).Round(time.Millisecond))

				require.NoError(t, treediff.Equal(src, dst, treediff.All()), "pass %d", pass+1)
				require.NoError(t, filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
					require.NoError(t, err)
					if fi.Mode()&os.ModeSymlink == 0 {
						return nil
					}
					rel, _ := filepath.Rel(src, p)
					want, err := os.Readlink(p)
					require.NoError(t, err)
					got, err := os.Readlink(filepath.Join(dst, rel))
					require.NoError(t, err)
					assert.Equal(t, want, got, "pass %d: target of %q", pass+1, rel)
					return nil
				}))
				var a, b unix.Stat_t
				require.NoError(t, unix.Lstat(filepath.Join(dst, "hard3"), &a))
				require.NoError(t, unix.Lstat(filepath.Join(dst, "dir/sub/hard2"), &b))
				assert.Equal(t, a.Ino, b.Ino, "pass %d: hard-linked symlinks are one inode", pass+1)
			}
		})
	}
}

// hostileClient is plain rsync through stunnel with the transfer's client certificate: what
// someone holding a stolen client key could run against the server.
type hostileClient struct {
	rsync, connectProg string
}

func newHostileClient(t *testing.T, h *helperSetup, srv *server) hostileClient {
	t.Helper()
	rsync, err := findRsync()
	require.NoError(t, err)
	stunnel, err := findStunnel()
	require.NoError(t, err)
	conf := filepath.Join(h.base, "hostile-"+strconv.Itoa(h.serves)+".conf")
	content := stunnelClientConfig{Connect: srv.addr, CertDir: filepath.Join(h.certDir, ClientDir)}.render()
	require.NoError(t, os.WriteFile(conf, []byte(content), 0o600))
	return hostileClient{rsync: rsync, connectProg: shellQuote(stunnel) + " " + shellQuote(conf)}
}

func (c hostileClient) run(args ...string) (string, error) {
	cmd := exec.Command(c.rsync, args...)
	cmd.Env = append(rsyncEnv(), "RSYNC_CONNECT_PROG="+c.connectProg)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// finish sends the completion report, which ends the server's pass.
func (c hostileClient) finish(t *testing.T, dir string) {
	t.Helper()
	report := filepath.Join(dir, completeFile)
	require.NoError(t, os.WriteFile(report, Report{Type: ReportDone, Time: time.Now()}.Marshal(), 0o644))
	out, err := c.run("--no-motd", report, daemonURL(doneModule, completeFile))
	require.NoError(t, err, out)
}

// TestHostileClientWritesNothingOutside: a client with the transfer's certificate but not
// ferry's client plants links to a directory outside the volume that the server's uid may
// write, then tries to write through them and to name paths outside in every way rsync
// offers. The directory stays empty; the options that name paths are refused. An unprivileged
// server is what matters (no chroot); a root server is checked the same way.
func TestHostileClientWritesNothingOutside(t *testing.T) {
	for _, form := range []serverForm{asRoot, asNobody} {
		t.Run(form.name, func(t *testing.T) {
			h := newHelperSetup(t)
			dst, outside := filepath.Join(h.base, "volume"), filepath.Join(h.base, "outside")
			require.NoError(t, os.Mkdir(dst, 0o755))
			require.NoError(t, os.Chown(dst, nobody, nobody))
			require.NoError(t, os.Mkdir(outside, 0o777))
			require.NoError(t, os.Chown(outside, nobody, nobody))
			assertOutsideEmpty := func(step string) {
				t.Helper()
				entries, err := os.ReadDir(outside)
				require.NoError(t, err)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				require.Empty(t, names, "%s: written outside the volume", step)
			}

			// Attacker's trees: the links, and directories of the same names holding a file.
			plant, through := filepath.Join(h.base, "plant"), filepath.Join(h.base, "through")
			require.NoError(t, os.MkdirAll(filepath.Join(plant, "deep"), 0o755))
			plantLinks := map[string]string{"esc": outside, "rel": "../outside", "deep/up": "../../outside"}
			for rel, target := range plantLinks {
				require.NoError(t, os.Symlink(target, filepath.Join(plant, rel)))
			}
			for _, d := range []string{"esc", "rel", "deep/up"} {
				require.NoError(t, os.MkdirAll(filepath.Join(through, d), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(through, d, "pwned"), []byte("x"), 0o644))
			}
			require.NoError(t, os.WriteFile(filepath.Join(through, "file"), []byte("new content"), 0o644))
			throughFiles := []string{through + "/./esc/pwned", through + "/./rel/pwned", through + "/./deep/up/pwned"}

			// Pass 1: the links are planted, and written through at once.
			srv, wait := h.serve(t, dst, form)
			c := newHostileClient(t, h, srv)
			out, err := c.run("-rl", plant+"/", daemonURL(dataModule, ""))
			require.NoError(t, err, out)
			out, err = c.run(append([]string{"-r", "--relative", "--no-implied-dirs"}, append(throughFiles, daemonURL(dataModule, ""))...)...)
			t.Logf("writing through links planted in the same pass: %v: %s", err, out)
			assertOutsideEmpty("pass 1")
			c.finish(t, h.base)
			require.NoError(t, wait())
			for rel, target := range plantLinks {
				got, err := os.Readlink(filepath.Join(dst, rel))
				require.NoError(t, err)
				assert.Equal(t, target, got, "after the pass, a link is exactly what the client sent")
			}
			require.NoError(t, os.WriteFile(filepath.Join(dst, "file"), []byte("old"), 0o644))
			require.NoError(t, os.Chown(filepath.Join(dst, "file"), nobody, nobody))

			// Pass 2: the links are on the target, stored as sent; every way to reach outside.
			srv, wait = h.serve(t, dst, form)
			c = newHostileClient(t, h, srv)
			data := daemonURL(dataModule, "")
			cases := []struct {
				name    string
				args    []string
				refused string // the option the server must refuse; "" when the attempt may run
			}{
				{name: "files below the links", args: append([]string{"-r", "--relative", "--no-implied-dirs"}, append(throughFiles, data)...)},
				{name: "a link as destination directory", args: []string{filepath.Join(through, "file"), daemonURL(dataModule, "esc/")}},
				{name: "../ destination", args: []string{filepath.Join(through, "file"), daemonURL(dataModule, "../outside/")}},
				{name: "../ destination, deeper", args: []string{"-r", through + "/", daemonURL(dataModule, "../../outside/")}},
				{name: "keep-dirlinks", args: []string{"-r", "--keep-dirlinks", through + "/", data}, refused: "keep-dirlinks"},
				{name: "backup-dir", args: []string{"-r", "-b", "--backup-dir=" + outside, through + "/", data}, refused: "backup-dir"},
				{name: "backup-dir through a link", args: []string{"-r", "-b", "--backup-dir=esc", through + "/", data}, refused: "backup-dir"},
				{name: "temp-dir", args: []string{"-r", "--temp-dir=" + outside, through + "/", data}, refused: "temp-dir"},
				{name: "partial-dir", args: []string{"-r", "--partial-dir=" + outside, through + "/", data}, refused: "partial-dir"},
				{name: "link-dest", args: []string{"-r", "--link-dest=" + outside, through + "/", data}, refused: "link-dest"},
				{name: "copy-dest", args: []string{"-r", "--copy-dest=../outside", through + "/", data}, refused: "copy-dest"},
				{name: "compare-dest", args: []string{"-r", "--compare-dest=esc", through + "/", data}, refused: "compare-dest"},
				{name: "log-file on the server", args: []string{"-r", "--remote-option=--log-file=" + filepath.Join(outside, "log"), through + "/", data}, refused: "log-file"},
				{name: "write-devices", args: []string{"-r", "--write-devices", through + "/", data}, refused: "write-devices"},
				{name: "write-batch on the server", args: []string{"-r", "--remote-option=--write-batch=" + filepath.Join(outside, "batch"), through + "/", data}, refused: "write-batch"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					out, err := c.run(tc.args...)
					t.Logf("rsync %s: %v\n%s", strings.Join(tc.args, " "), err, out)
					if tc.refused != "" {
						// The daemon says why in its own log only ("The server is configured to refuse
						// --keep-dirlinks (-K)"); the client gets rsync's exit code 4.
						var exit *exec.ExitError
						require.ErrorAs(t, err, &exit, "the server must refuse --%s", tc.refused)
						assert.Equal(t, 4, exit.ExitCode(), "requested action not supported")
					}
					assertOutsideEmpty(tc.name)
				})
			}
			c.finish(t, h.base)
			require.NoError(t, wait())
			assertOutsideEmpty("after pass 2")

		})
	}
}

// TestDevicesCopiedOrSkipped: a root server with CAP_MKNOD receives device files; a root one
// without it and an unprivileged one cannot, and the client leaves them out on its first
// attempt (no failure), lists them in its report and still sends FIFOs.
func TestDevicesCopiedOrSkipped(t *testing.T) {
	cases := []struct {
		form    serverForm
		devices bool
	}{
		{form: asRoot, devices: true},
		{form: asRootNoMknod},
		{form: asNobody},
	}
	for _, tc := range cases {
		t.Run(tc.form.name, func(t *testing.T) {
			h := newHelperSetup(t)
			src, dst := filepath.Join(h.base, "src"), filepath.Join(h.base, "dst")
			buildTree(t, src, "dev/", "file=10")
			require.NoError(t, unix.Mknod(filepath.Join(src, "dev/null0"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			require.NoError(t, unix.Mknod(filepath.Join(src, "disk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
			require.NoError(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
			require.NoError(t, unix.Mkfifo(filepath.Join(src, "dev/fifo2"), 0o644))
			if tc.form.uid != 0 {
				for _, p := range []string{"", "dev", "file", "fifo", "dev/fifo2"} {
					require.NoError(t, os.Lchown(filepath.Join(src, p), tc.form.uid, tc.form.uid))
				}
			}
			require.NoError(t, os.Mkdir(dst, 0o755))
			require.NoError(t, os.Chown(dst, tc.form.uid, tc.form.uid))

			var logged syncBuffer
			srv, wait := h.serve(t, dst, tc.form)
			r := send(t, srv, h.base, src, func(o *SendOptions) {
				l := logrus.New()
				l.SetOutput(io.MultiWriter(&logged, testWriter{t}))
				o.Log = l
			})
			require.NoError(t, r.err)
			require.NoError(t, wait())
			assert.Equal(t, 1, r.done.Attempts, "no failed attempt")
			assert.Zero(t, r.count(ReportRetry))

			isDevice := func(rel string) bool { return rel == "dev/null0" || rel == "disk" }
			if tc.devices {
				require.NoError(t, treediff.Equal(src, dst, treediff.All()))
				assert.Empty(t, r.done.Skipped)
				assert.Zero(t, r.done.SkippedCount)
				assert.Zero(t, r.done.Warnings)
				var st unix.Stat_t
				require.NoError(t, unix.Lstat(filepath.Join(dst, "dev/null0"), &st))
				assert.Equal(t, uint32(unix.S_IFCHR), st.Mode&unix.S_IFMT)
				assert.Equal(t, unix.Mkdev(1, 3), st.Rdev)
				return
			}
			opts := treediff.All()
			opts.Skip = isDevice
			require.NoError(t, treediff.Equal(src, dst, opts), "all but the devices")
			for _, rel := range []string{"dev/null0", "disk"} {
				_, err := os.Lstat(filepath.Join(dst, rel))
				assert.ErrorIs(t, err, os.ErrNotExist, "%s is not on the target", rel)
			}
			for _, rel := range []string{"fifo", "dev/fifo2"} {
				var st unix.Stat_t
				require.NoError(t, unix.Lstat(filepath.Join(dst, rel), &st), "FIFOs go")
				assert.Equal(t, uint32(unix.S_IFIFO), st.Mode&unix.S_IFMT)
			}
			assert.Equal(t, []string{"dev/null0", "disk"}, r.done.Skipped)
			assert.Equal(t, int64(2), r.done.SkippedCount)
			assert.Equal(t, 2, r.done.Warnings, "skipped devices count as warnings")
			assert.Contains(t, r.done.Human(), "2 device file(s) skipped")
			assert.Contains(t, logged.String(), "skipping dev/null0, disk")
		})
	}
}
