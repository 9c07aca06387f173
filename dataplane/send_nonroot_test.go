package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-dev/ferry/internal/treediff"
)

// The unprivileged run: serve and send as uid 65534 (as a restricted pod would), on a target
// volume root owned by root and group-writable through its group (as an fsGroup volume is).

const nobody = 65534

// helperEnv carries a helper process's role and options.
const helperEnv = "FERRY_DATAMOVER_TEST_HELPER"

type helperArgs struct {
	Role      string // "serve" or "send"
	Dir       string
	Addr      string
	CertDir   string
	Streams   int
	Verify    bool   // send only
	ReadyFile string // serve only
}

// TestHelperProcess is not a test: it is this test binary re-run as another user, serving or
// sending for TestSendUnprivileged.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	var a helperArgs
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	ctx := context.Background()
	var err error
	switch a.Role {
	case "serve":
		err = Serve(ctx, ServeOptions{Dir: a.Dir, Listen: a.Addr, CertDir: a.CertDir, Log: log, ReadyFile: a.ReadyFile})
	case "send":
		_, err = Send(ctx, SendOptions{
			Dir: a.Dir, To: a.Addr, CertDir: a.CertDir, Streams: a.Streams, Verify: a.Verify, Log: log, Out: os.Stdout, Progress: ProgressJSON,
			Backoff: 200 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 6,
		})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(exitCodeOf(err))
	}
	os.Exit(0)
}

// startHelper runs this test binary (copied where uid 65534 can execute it) as 65534.
func startHelper(t *testing.T, bin, tmp string, a helperArgs, stdout io.Writer) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(a)
	require.NoError(t, err)
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw), "TMPDIR="+tmp, "HOME="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = stdout
	cmd.Stderr = testWriter{t}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestSendUnprivileged(t *testing.T) {
	base, tmp, bin := unprivilegedBase(t)

	// Source: 65534's files, including a directory without write permission (which makes the
	// sender fall back to one stream against an unprivileged server).
	src := filepath.Join(base, "src")
	buildTree(t, src, "a/x=1000", "a/b/y=2000", "c/z=10", "top=5", "a/b/link->../x", "c/hard=>c/z", "holes~8", "ro/inner=3")
	require.NoError(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	require.NoError(t, unix.Setxattr(filepath.Join(src, "a/x"), "user.test", []byte("v"), 0))
	run(t, "setfacl", "-m", "u:1234:r", filepath.Join(src, "a/b/y"))
	require.NoError(t, os.Chmod(filepath.Join(src, "a/x"), 0o640))
	require.NoError(t, filepath.Walk(src, func(p string, _ os.FileInfo, err error) error {
		require.NoError(t, err)
		return os.Lchown(p, nobody, nobody)
	}))
	require.NoError(t, os.Chmod(filepath.Join(src, "ro"), 0o555))
	old := time.Date(2021, 3, 4, 5, 6, 7, 800, time.UTC)
	for _, p := range []string{"a/b/y", "top", "ro", "a/b", "a"} {
		setTimes(t, filepath.Join(src, p), old)
	}

	dst := fsGroupVolume(t, filepath.Join(base, "dst"))
	certDir := filepath.Join(base, "certs")
	addr, serve := startUnprivilegedServer(t, bin, tmp, certDir, dst)
	var out syncBuffer
	send := startHelper(t, bin, tmp, helperArgs{Role: "send", Dir: src, Addr: addr, CertDir: filepath.Join(certDir, ClientDir), Streams: 4, Verify: true}, &out)
	require.NoError(t, send.Wait(), "send as uid 65534: %s", out.String())
	require.NoError(t, serve.Wait(), "serve as uid 65534")

	// Everything but the root's own attributes (which 65534 may not set) is equal, owners
	// included: the files are 65534's on both sides.
	opts := treediff.All()
	opts.Root = false
	require.NoError(t, treediff.Equal(src, dst, opts))
	var st unix.Stat_t
	require.NoError(t, unix.Stat(dst, &st))
	assert.Equal(t, uint32(0), st.Uid, "the volume root keeps its owner")
	assert.Equal(t, uint32(nobody), st.Gid)
	assert.Equal(t, uint32(0o2775), st.Mode&0o7777, "and its mode")

	var done Report
	for _, line := range out.lines() {
		e, err := ParseReport([]byte(line))
		require.NoError(t, err, line)
		if e.Type == ReportDone {
			done = e
		}
	}
	assert.Equal(t, ReportDone, done.Type)
	assert.Equal(t, 1, done.Attempts, "no error, no retry")
	// The verify pass finds nothing to report: not the munged symlink (compared by its real
	// target), not the volume root's attributes (which the server may not set).
	require.NotNil(t, done.Verified)
	assert.Equal(t, Verification{Files: done.Files, Bytes: done.BytesTotal}, *done.Verified)
}

// unprivilegedBase makes a directory uid 65534 can use: base (0755), tmp (its TMPDIR) and
// bin, this test binary copied where 65534 can run it.
func unprivilegedBase(t *testing.T) (base, tmp, bin string) {
	t.Helper()
	require.Equal(t, 0, os.Geteuid(), "this test runs as uid 65534 too and must start as root (CI runs as root)")
	requireTools(t)
	base, err := os.MkdirTemp("", "ferry-unprivileged-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	tmp = filepath.Join(base, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o1777))
	require.NoError(t, os.Chmod(tmp, 0o1777))
	self, err := os.Executable()
	require.NoError(t, err)
	bin = filepath.Join(base, "helper.test")
	data, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	return base, tmp, bin
}

// fsGroupVolume makes dir a volume root as an fsGroup volume is: owned by root, writable by
// 65534's group, setgid.
func fsGroupVolume(t *testing.T, dir string) string {
	t.Helper()
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chown(dir, 0, nobody))
	require.NoError(t, unix.Chmod(dir, 0o2775))
	return dir
}

// startUnprivilegedServer writes a transfer's certificates into certDir (65534's) and runs
// serve into dst as uid 65534; it returns once serve listens.
func startUnprivilegedServer(t *testing.T, bin, tmp, certDir, dst string) (string, *exec.Cmd) {
	t.Helper()
	writeNobodyCerts(t, certDir)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	serve := startHelper(t, bin, tmp, helperArgs{Role: "serve", Dir: dst, Addr: addr, CertDir: filepath.Join(certDir, ServerDir)}, io.Discard)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "serve listens")
	return addr, serve
}

// writeNobodyCerts writes a transfer's certificates into certDir, owned by uid 65534.
func writeNobodyCerts(t *testing.T, certDir string) {
	t.Helper()
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(certDir))
	require.NoError(t, filepath.Walk(certDir, func(p string, _ os.FileInfo, err error) error {
		require.NoError(t, err)
		return os.Chown(p, nobody, nobody)
	}))
}
