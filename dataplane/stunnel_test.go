package dataplane

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStunnelServerConfig(t *testing.T) {
	conf := stunnelServerConfig{Listen: "0.0.0.0:8443", CertDir: "/mnt/certs", Rsync: "/usr/bin/rsync", RsyncdConf: "/tmp/w/rsyncd.conf"}.render()
	for _, want := range []string{
		"foreground = yes\n", "pid =\n",
		"accept = 0.0.0.0:8443\n",
		"exec = /usr/bin/rsync\n", "execArgs = rsync --server --daemon --config=/tmp/w/rsyncd.conf .\n",
		"cert = /mnt/certs/tls.crt\n", "key = /mnt/certs/tls.key\n", "CAfile = /mnt/certs/ca.crt\n",
		"verifyChain = yes\n", "requireCert = yes\n", "checkHost = ferry-transfer-client\n",
		"sslVersionMin = TLSv1.2\n", "ciphersuites = TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384\n",
		"socket = l:SO_KEEPALIVE=1\n", "socket = l:TCP_NODELAY=1\n",
	} {
		assert.Contains(t, conf, want)
	}
	assert.NotContains(t, conf, "connect =", "no rsync listener to connect to: each connection gets its own rsync")
}

func TestStunnelClientConfig(t *testing.T) {
	conf := stunnelClientConfig{Connect: "transfer.apps.example.com:443", SNI: "transfer.apps.example.com", CertDir: "/mnt/certs"}.render()
	for _, want := range []string{
		"client = yes\n", "connect = transfer.apps.example.com:443\n", "sni = transfer.apps.example.com\n",
		"verifyChain = yes\n", "checkHost = ferry-transfer-server\n", "CAfile = /mnt/certs/ca.crt\n",
		"sslVersionMin = TLSv1.2\n", "socket = r:SO_KEEPALIVE=1\n", "TIMEOUTclose = 0\n",
	} {
		assert.Contains(t, conf, want)
	}
	assert.NotContains(t, conf, "accept =", "inetd mode: no local listening port")
	assert.Contains(t, stunnelClientConfig{Connect: "10.0.0.1:8443"}.render(), "sni = \n", "no SNI for an address")
}

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ok, err := listensOn(os.Getpid(), port)
	require.NoError(t, err)
	assert.True(t, ok)

	free := freePort(t)
	ok, err = listensOn(os.Getpid(), free)
	require.NoError(t, err)
	assert.False(t, ok)

	// Another process's port is not ours.
	ok, err = listensOn(1, port)
	assert.False(t, ok)
	assert.Error(t, err)
}

func TestStartStunnelServerFailures(t *testing.T) {
	stunnel, err := findStunnel()
	require.NoError(t, err, "stunnel must be installed (make deps)")
	rsync, err := findRsync()
	require.NoError(t, err, "rsync must be installed (make deps)")
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	cases := []struct {
		name    string
		listen  string
		certs   func(dir string)
		wantErr string
	}{
		{name: "port taken", listen: busy.Addr().String(), certs: func(dir string) { require.NoError(t, certs.Server.WriteDir(dir)) },
			wantErr: "Address already in use"},
		{name: "key missing", listen: "127.0.0.1:" + strconv.Itoa(freePort(t)), certs: func(dir string) {
			require.NoError(t, certs.Server.WriteDir(dir))
			require.NoError(t, os.Remove(filepath.Join(dir, KeyFile)))
		}, wantErr: "tls.key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certDir := filepath.Join(dir, "certs")
			tc.certs(certDir)
			conf := filepath.Join(dir, "stunnel.conf")
			require.NoError(t, os.WriteFile(conf, []byte(stunnelServerConfig{
				Listen: tc.listen, CertDir: certDir, Rsync: rsync, RsyncdConf: filepath.Join(dir, "rsyncd.conf"),
			}.render()), 0o600))
			log := logrus.New()
			log.SetOutput(testWriter{t})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := startStunnelServer(ctx, stunnel, conf, tc.listen, log)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "stunnel exited before listening")
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testWriter sends log output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func TestStunnelAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8443":          "0.0.0.0:8443",
		"[::]:8443":             ":::8443",
		"[fd00::1]:443":         "fd00::1:443",
		"transfer.example:8443": "transfer.example:8443",
	} {
		assert.Equal(t, want, stunnelAddr(in), in)
	}
}
