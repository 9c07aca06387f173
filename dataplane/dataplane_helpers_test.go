package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Helpers for the data-plane tests: they run the real rsync and stunnel on loopback.

// testLogger logs into the test's output.
func testLogger(t *testing.T, name string) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.InfoLevel)
	return l.WithField("side", name)
}

// requireTools fails the test (never skips) when a program the data plane needs is missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, find := range []func() (string, error){findRsync, findStunnel} {
		_, err := find()
		require.NoError(t, err, "the data-plane tests run the real programs: run `make deps`")
	}
}

// server is a Serve running in the background.
type server struct {
	addr   string
	dir    string
	certs  *Certs
	done   chan error
	cancel context.CancelFunc
}

// startServer writes a transfer's certificates under base and starts Serve into dir.
func startServer(t *testing.T, base, dir string) *server {
	t.Helper()
	return startServerWith(t, base, dir, nil)
}

// startServerWith is startServer with serve's options changed by tweak.
func startServerWith(t *testing.T, base, dir string, tweak func(*ServeOptions)) *server {
	t.Helper()
	requireTools(t)
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))
	s := &server{addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), dir: dir, certs: certs, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan struct{})
	o := ServeOptions{
		Dir: dir, Listen: s.addr, CertDir: filepath.Join(base, "certs", ServerDir),
		Log: testLogger(t, "serve"), Ready: func() { close(ready) },
	}
	if tweak != nil {
		tweak(&o)
	}
	go func() { s.done <- Serve(ctx, o) }()
	select {
	case <-ready:
	case err := <-s.done:
		require.NoError(t, err, "serve did not start")
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of its context")
		}
	})
	return s
}

// wait returns Serve's result.
func (s *server) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not exit within 60s after the client finished")
		return nil
	}
}

// sendResult is what a Send printed and returned.
type sendResult struct {
	done    Report
	reports []Report
	err     error
}

// send runs Send to s with JSON progress and checks that stdout held nothing but reports.
func send(t *testing.T, s *server, base, src string, tweak func(*SendOptions)) sendResult {
	t.Helper()
	var out bytes.Buffer
	o := SendOptions{
		Dir: src, To: s.addr, CertDir: filepath.Join(base, "certs", ClientDir),
		Progress: ProgressJSON, Out: &out, ProgressInterval: 100 * time.Millisecond,
		Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 4,
		Log: testLogger(t, "send"),
	}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var r sendResult
	r.done, r.err = Send(ctx, o)
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		e, err := ParseReport(sc.Bytes())
		require.NoError(t, err, "with --progress=json stdout carries only reports: %q", sc.Text())
		r.reports = append(r.reports, e)
	}
	require.NotEmpty(t, r.reports)
	last := r.reports[len(r.reports)-1]
	if r.err == nil {
		require.Equal(t, ReportDone, last.Type)
	} else {
		require.Equal(t, ReportError, last.Type)
	}
	return r
}

func (r sendResult) count(typ ReportType) int {
	n := 0
	for _, e := range r.reports {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// writeRandom writes size pseudo-random (incompressible) bytes to path.
func writeRandom(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, err = io.CopyN(f, rng, size)
	require.NoError(t, err)
}

// cutProxy forwards TCP connections to target and, once, cuts every open connection after
// cutAfter bytes have gone from clients to the server: a network failure mid-transfer.
type cutProxy struct {
	l        net.Listener
	target   string
	cutAfter int64
	sent     atomic.Int64
	cut      atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
	cuts     atomic.Int32
}

func startCutProxy(t *testing.T, target string, cutAfter int64) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{l: l, target: target, cutAfter: cutAfter}
	t.Cleanup(func() { l.Close(); p.closeAll() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) handle(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(c, up); c.Close() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := up.Write(buf[:n]); werr != nil {
				break
			}
			if p.sent.Add(int64(n)) >= p.cutAfter && p.cut.CompareAndSwap(false, true) {
				p.cuts.Add(1)
				p.closeAll()
				return
			}
		}
		if err != nil {
			break
		}
	}
	up.Close()
	c.Close()
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		// An RST, like a dropped NAT entry, rather than a polite FIN.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	p.conns = nil
}

// setTimes sets a path's atime and mtime without following symlinks.
func setTimes(t *testing.T, path string, when time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(when.UnixNano())
	require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for a child's output and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) lines() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
