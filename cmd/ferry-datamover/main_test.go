package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/proctest"
	"github.com/ferry-dev/ferry/internal/treediff"
)

// The tests run this test binary as the ferry-datamover command (the environment variable
// below makes TestMain call main), so they see exit codes, stdout and stderr as a pod would.
const runMainEnv = "FERRY_DATAMOVER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// command prepares ferry-datamover with args.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

type result struct {
	code           int
	stdout, stderr string
}

func runCommand(t *testing.T, args ...string) result {
	t.Helper()
	cmd := command(t, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func TestCertsCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "certs")
	r := runCommand(t, "certs", "--out", out, "--validity", "48h")
	require.Equal(t, 0, r.code, r.stderr)
	for _, side := range []string{dataplane.ServerDir, dataplane.ClientDir} {
		fi, err := os.Stat(filepath.Join(out, side))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
		for _, f := range []string{dataplane.CAFile, dataplane.CertFile, dataplane.KeyFile} {
			fi, err := os.Stat(filepath.Join(out, side, f))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		}
		role := dataplane.ServerName
		if side == dataplane.ClientDir {
			role = dataplane.ClientName
		}
		_, err = dataplane.LoadBundle(filepath.Join(out, side), role)
		assert.NoError(t, err)
	}
	assert.Empty(t, r.stdout)
	assert.NotContains(t, r.stderr, "PRIVATE KEY", "no key material in any output")
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "--out is required"},
		{[]string{"certs", "--out", t.TempDir(), "--validity", "-1h"}, "validity must be positive"},
		{[]string{"serve", "--dir", "/tmp"}, "--dir (or --device) and --certs are required"},
		{[]string{"send", "--dir", "/tmp", "--certs", "/tmp"}, "--dir (or --device), --to and --certs are required"},
		{[]string{"send", "--dir", "/tmp", "--to", "x:1", "--certs", "/tmp", "--progress=xml"}, "--progress must be human, json or none"},
		{[]string{"send", "--dir", "/tmp", "--to", "x:1", "--certs", "/tmp", "--streams", "0"}, "--streams"},
		{[]string{"send", "--no-such-flag"}, "unknown flag"},
		{[]string{"send", "--dir", "/tmp", "--to", "x:1", "--certs", "/tmp", "--log-level", "loud"}, "--log-level: want debug, info, warn or error"},
		{[]string{"serve", "--dir", "/tmp", "--certs", "/tmp", "--log-format", "xml"}, "--log-format: want text or json"},
		{[]string{"rollback", "-n", "x", "-o", "yaml"}, "--output: want text or json"},
		{[]string{"rollback"}, "name the namespaces to roll back"},
		{[]string{"request", "pvc", "no-slash"}, "want NAMESPACE/NAME"},
		{[]string{"request", "pvc", "a/b", "--type", "later"}, "--type must be stage or final"},
		{[]string{"version", "-o", "yaml"}, "--output: want text or json"},
		{[]string{"dashboard", "--listen", "no-port"}, "--listen"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCommand(t, tc.args...)
			assert.Equal(t, 2, r.code, "usage errors exit 2: %s", r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
}

// TestServeAndSend: the commands as the transfer pods run them, end to end.
func TestServeAndSend(t *testing.T) {
	base := t.TempDir()
	src, dst, certs := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "certs")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "dir/file"), []byte("hello"), 0o640))
	require.NoError(t, os.Symlink("dir/file", filepath.Join(src, "link")))
	require.NoError(t, os.Mkdir(dst, 0o755))
	require.Equal(t, 0, runCommand(t, "certs", "--out", certs).code)

	addr := freeAddr(t)
	serve := command(t, "serve", "--dir", dst, "--listen", addr, "--certs", filepath.Join(certs, "server"))
	var serveErr bytes.Buffer
	serve.Stderr = &serveErr
	require.NoError(t, serve.Start())

	r := runCommand(t, "send", "--dir", src, "--to", addr, "--certs", filepath.Join(certs, "client"), "--progress=json", "--backoff=100ms")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, serve.Wait(), serveErr.String())

	// stdout: JSON reports only, the last one "done".
	var last dataplane.Report
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	n := 0
	for sc.Scan() {
		e, err := dataplane.ParseReport(sc.Bytes())
		require.NoError(t, err, "stdout line %q", sc.Text())
		last = e
		n++
	}
	require.Positive(t, n)
	assert.Equal(t, dataplane.ReportDone, last.Type)
	assert.Equal(t, int64(1), last.FilesTransferred)
	require.NoError(t, treediff.Equal(src, dst, treediff.All()))
	for _, out := range []string{r.stdout, r.stderr, serveErr.String()} {
		assert.NotContains(t, out, "PRIVATE KEY", "no key material in any output")
		assert.NotContains(t, out, "BEGIN CERTIFICATE")
	}

	// Human progress goes to stdout as lines for people.
	serve = command(t, "serve", "--dir", dst, "--listen", addr, "--certs", filepath.Join(certs, "server"))
	require.NoError(t, serve.Start())
	r = runCommand(t, "send", "--dir", src, "--to", addr, "--certs", filepath.Join(certs, "client"), "--backoff=100ms")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, serve.Wait())
	assert.Contains(t, r.stdout, "done: 1 files")
}

func TestServeFailures(t *testing.T) {
	base := t.TempDir()
	require.Equal(t, 0, runCommand(t, "certs", "--out", filepath.Join(base, "certs")).code)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	r := runCommand(t, "serve", "--dir", base, "--listen", busy.Addr().String(), "--certs", filepath.Join(base, "certs/server"))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "cannot listen on "+busy.Addr().String())

	r = runCommand(t, "serve", "--dir", base, "--listen", freeAddr(t), "--certs", base)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "ca.crt: no such file")
	// base holds the certificates: not empty.
	r = runCommand(t, "serve", "--dir", base, "--listen", freeAddr(t), "--certs", filepath.Join(base, "certs/server"), "--require-empty")
	assert.Equal(t, dataplane.ExitTargetNotEmpty, r.code, r.stderr)
	assert.Contains(t, r.stderr, "the target volume holds data ferry did not write")
}

// TestSendFailure: nothing to connect to; send gives up with rsync's exit code and an error
// report.
func TestSendFailure(t *testing.T) {
	base := t.TempDir()
	require.Equal(t, 0, runCommand(t, "certs", "--out", filepath.Join(base, "certs")).code)
	r := runCommand(t, "send", "--dir", base, "--to", freeAddr(t), "--certs", filepath.Join(base, "certs/client"),
		"--progress=json", "--max-attempts=2", "--backoff=50ms")
	assert.NotEqual(t, 0, r.code)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	last, err := dataplane.ParseReport([]byte(lines[len(lines)-1]))
	require.NoError(t, err)
	assert.Equal(t, dataplane.ReportError, last.Type)
	assert.Equal(t, r.code, last.ExitCode, "the exit code is the one the error report announces")
	assert.Contains(t, r.stderr, "giving up after 2 attempts")
}

// TestServeSignals: SIGTERM stops serve and its stunnel (exit 143); if serve is killed
// outright, stunnel dies with it.
func TestServeSignals(t *testing.T) {
	base := t.TempDir()
	require.Equal(t, 0, runCommand(t, "certs", "--out", filepath.Join(base, "certs")).code)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGKILL, -1}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			addr := freeAddr(t)
			ready := filepath.Join(t.TempDir(), "ready")
			serve := command(t, "serve", "--dir", base, "--listen", addr, "--certs", filepath.Join(base, "certs/server"), "--ready-file", ready)
			serve.Env = append(serve.Env, "TMPDIR="+t.TempDir()) // a killed serve leaves its work directory
			var stderr bytes.Buffer
			serve.Stderr = &stderr
			require.NoError(t, serve.Start())
			require.Eventually(t, func() bool { _, err := os.Stat(ready); return err == nil }, 20*time.Second, 50*time.Millisecond,
				"the ready file appears (the server pod's readiness)")
			stunnels := proctest.ChildPIDs(serve.Process.Pid, "stunnel4")
			require.Len(t, stunnels, 1, "serve runs stunnel")
			stunnel := stunnels[0]
			require.True(t, listening(addr), "ready means TLS connections are accepted")

			require.NoError(t, serve.Process.Signal(tc.sig))
			err := serve.Wait()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			assert.Equal(t, tc.code, exit.ExitCode(), stderr.String())
			if tc.sig == syscall.SIGTERM {
				assert.Contains(t, stderr.String(), "stopped by terminated")
				assert.NoFileExists(t, ready, "not ready once stopped")
			}
			assert.Eventually(t, func() bool { return !proctest.ProcessAlive(stunnel) }, 10*time.Second, 50*time.Millisecond, "stunnel ends with serve")
		})
	}
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestVersionCommand(t *testing.T) {
	r := runCommand(t, "version", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var v map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
	assert.NotEmpty(t, v["version"])
	assert.Contains(t, v["go"], "go1.")
	r = runCommand(t, "version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "ferry-datamover ")
}
