package dataplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/proctest"
)

func TestServeSetupErrors(t *testing.T) {
	requireTools(t)
	base := t.TempDir()
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))
	good := filepath.Join(base, "certs", ServerDir)
	dir := filepath.Join(base, "dst")
	require.NoError(t, os.Mkdir(dir, 0o755))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))

	cases := []struct {
		name    string
		opts    ServeOptions
		path    string // PATH for the case ("" keeps it)
		wantErr string
	}{
		{name: "missing target", opts: ServeOptions{Dir: filepath.Join(base, "nope"), CertDir: good}, wantErr: "target directory " + base + "/nope does not exist"},
		{name: "target is a file", opts: ServeOptions{Dir: file, CertDir: good}, wantErr: "is not a directory"},
		{name: "client certificates", opts: ServeOptions{Dir: dir, CertDir: filepath.Join(base, "certs", ClientDir)}, wantErr: "not a valid ferry-transfer-server certificate"},
		{name: "no certificates", opts: ServeOptions{Dir: dir, CertDir: base}, wantErr: "ca.crt: no such file"},
		{name: "port taken", opts: ServeOptions{Dir: dir, CertDir: good, Listen: busy.Addr().String()}, wantErr: "cannot listen on " + busy.Addr().String()},
		{name: "bad listen address", opts: ServeOptions{Dir: dir, CertDir: good, Listen: "localhost"}, wantErr: `listen address "localhost"`},
		{name: "no rsync or stunnel", opts: ServeOptions{Dir: dir, CertDir: good}, path: base, wantErr: "not found on PATH"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Listen == "" {
				tc.opts.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t))
			}
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			tc.opts.Log = testLogger(t, "serve")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Serve(ctx, tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "a failed start writes nothing into the target")
}

// TestServeRequireEmpty: with --require-empty, serve refuses a target that holds anything but
// lost+found, changes nothing there, and says so with its own exit code; an empty one (or one
// with only lost+found) is served.
func TestServeRequireEmpty(t *testing.T) {
	requireTools(t)
	base := t.TempDir()
	full := filepath.Join(base, "full")
	require.NoError(t, os.MkdirAll(filepath.Join(full, "lost+found"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(full, "orders.db"), []byte("precious"), 0o600))
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))
	err = Serve(context.Background(), ServeOptions{Dir: full, CertDir: filepath.Join(base, "certs", ServerDir), RequireEmpty: true,
		Listen: "127.0.0.1:" + strconv.Itoa(freePort(t)), Log: testLogger(t, "serve")})
	require.ErrorIs(t, err, ErrTargetNotEmpty)
	assert.Equal(t, ExitTargetNotEmpty, exitCodeOf(err))
	b, err := os.ReadFile(filepath.Join(full, "orders.db"))
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b), "nothing changed")

	empty := filepath.Join(base, "empty")
	require.NoError(t, os.MkdirAll(filepath.Join(empty, "lost+found"), 0o700))
	src := filepath.Join(base, "src")
	require.NoError(t, os.MkdirAll(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644))
	srv := startServerWith(t, base, empty, func(o *ServeOptions) { o.RequireEmpty = true })
	r := send(t, srv, base, src, nil)
	require.NoError(t, r.err)
	require.NoError(t, srv.wait(t))
	got, err := os.ReadFile(filepath.Join(empty, "a"))
	require.NoError(t, err)
	assert.Equal(t, "a", string(got))
}

// TestServeStops: cancelling serve (what SIGTERM does in the command) ends stunnel and every
// rsync it started, and says the client never reported completion.
func TestServeStops(t *testing.T) {
	base := t.TempDir()
	dst := filepath.Join(base, "dst")
	require.NoError(t, os.Mkdir(dst, 0o755))
	before := proctest.ChildPIDs(os.Getpid(), "stunnel4")
	srv := startServer(t, base, dst)
	var stunnels []int
	for _, pid := range proctest.ChildPIDs(os.Getpid(), "stunnel4") {
		if !containsInt(before, pid) {
			stunnels = append(stunnels, pid)
		}
	}
	require.Len(t, stunnels, 1, "serve runs one stunnel")

	// A connection in progress: its rsync daemon must go too.
	conn := dialTLS(t, srv, base, &srv.certs.Client)
	_, err := conn.Write([]byte("@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n"))
	require.NoError(t, err)
	greeting := make([]byte, 8)
	_, err = io.ReadFull(conn, greeting)
	require.NoError(t, err)
	assert.Equal(t, "@RSYNCD:", string(greeting), "an authenticated client reaches the rsync daemon")
	require.Eventually(t, func() bool { return groupMembers(stunnels[0]) > 0 }, 10*time.Second, 50*time.Millisecond)

	srv.cancel()
	err = srv.wait(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stopped before the client reported completion")
	assert.False(t, proctest.ProcessAlive(stunnels[0]), "stunnel is gone")
	assert.Zero(t, groupMembers(stunnels[0]), "and so are the rsync daemons it started")
	conn.Close()
}

// TestServeRefusesStrangers: a client without a certificate, with one from another transfer's
// CA, or with the server's own certificate is refused during the TLS handshake; nothing reaches
// rsync and nothing is written.
func TestServeRefusesStrangers(t *testing.T) {
	base := t.TempDir()
	dst := filepath.Join(base, "dst")
	require.NoError(t, os.Mkdir(dst, 0o755))
	srv := startServer(t, base, dst)
	other, err := GenerateCerts(time.Hour)
	require.NoError(t, err)

	cases := []struct {
		name string
		cert *Bundle
	}{
		{name: "no client certificate"},
		{name: "certificate of another transfer's CA", cert: &other.Client},
		{name: "the server's own certificate", cert: &srv.certs.Server},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialTLS(t, srv, base, tc.cert)
			defer conn.Close()
			// A whole rsync upload request; a refused client never gets the daemon's greeting.
			_, _ = conn.Write([]byte("@RSYNCD: 32.0\ndata\n"))
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			require.Error(t, err, "the server must refuse, it answered %q", buf[:n])
			assert.NotContains(t, string(buf[:n]), "@RSYNCD")
			var timeout net.Error
			assert.False(t, errors.As(err, &timeout) && timeout.Timeout(), "refused, not ignored: %v", err)
		})
	}
	entries, err := os.ReadDir(dst)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written to the target")

	// The real client still gets through afterwards: the server is not harmed.
	src := filepath.Join(base, "src")
	require.NoError(t, os.MkdirAll(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	r := send(t, srv, base, src, nil)
	require.NoError(t, r.err)
	require.NoError(t, srv.wait(t))
}

// TestServeClientGaveUp: a client that reports failure makes serve exit non-zero with its reason.
func TestServeClientGaveUp(t *testing.T) {
	base := t.TempDir()
	dst := filepath.Join(base, "dst")
	require.NoError(t, os.Mkdir(dst, 0o755))
	srv := startServer(t, base, dst)
	s, err := newSender(SendOptions{Dir: base, To: srv.addr, CertDir: filepath.Join(base, "certs", ClientDir), Log: testLogger(t, "send")})
	require.NoError(t, err)
	defer os.RemoveAll(s.work)
	s.tellServerFailed(errors.New("rsync exited with code 23 (partial transfer due to error): permission denied"))
	err = srv.wait(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the client gave up: rsync exited with code 23")
}

// dialTLS opens a TLS connection to the server as a client presenting cert (nil: none),
// trusting the transfer's CA.
func dialTLS(t *testing.T, srv *server, base string, cert *Bundle) *tls.Conn {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(srv.certs.Client.CA))
	cfg := &tls.Config{RootCAs: pool, ServerName: ServerName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		kp, err := tls.X509KeyPair(cert.Cert, cert.Key)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{kp}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", srv.addr, cfg)
	if err != nil {
		// TLS 1.2 refuses during the handshake; 1.3 on the first read. Either is a refusal.
		require.True(t, strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "handshake"), "%v", err)
		return tlsClosed(t)
	}
	return conn
}

// tlsClosed is a connection whose reads fail, standing for a handshake refused at dial time.
func tlsClosed(t *testing.T) *tls.Conn {
	a, b := net.Pipe()
	b.Close()
	return tls.Client(a, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // never completes a handshake
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
