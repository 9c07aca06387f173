package dataplane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateCerts(t *testing.T) {
	c, err := GenerateCerts(DefaultCertValidity)
	require.NoError(t, err)

	assert.Equal(t, c.Server.CA, c.Client.CA, "both sides trust the same per-transfer CA")
	ca, err := parseCertPEM(c.Server.CA)
	require.NoError(t, err)
	assert.True(t, ca.IsCA)
	assert.True(t, ca.MaxPathLenZero, "the CA signs leaves only")
	assert.NotContains(t, string(c.Server.CA), "PRIVATE KEY", "no key travels with the CA certificate")
	assert.NotContains(t, string(c.Client.CA), "PRIVATE KEY")

	for _, tc := range []struct {
		role  string
		b     Bundle
		usage x509.ExtKeyUsage
	}{
		{ServerName, c.Server, x509.ExtKeyUsageServerAuth},
		{ClientName, c.Client, x509.ExtKeyUsageClientAuth},
	} {
		t.Run(tc.role, func(t *testing.T) {
			cert, err := parseCertPEM(tc.b.Cert)
			require.NoError(t, err)
			assert.Equal(t, []string{tc.role}, cert.DNSNames)
			assert.Equal(t, []x509.ExtKeyUsage{tc.usage}, cert.ExtKeyUsage, "a leaf is good for its own role only")
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			require.True(t, ok, "ECDSA key")
			assert.Equal(t, elliptic.P256(), pub.Curve)
			assert.WithinDuration(t, time.Now().Add(DefaultCertValidity), cert.NotAfter, 2*time.Minute)
			assert.True(t, cert.NotBefore.Before(time.Now().Add(-30*time.Minute)), "backdated for clock skew")
			require.NoError(t, tc.b.Verify(tc.role, time.Now()))
			assert.Error(t, tc.b.Verify(tc.role, time.Now().Add(DefaultCertValidity+time.Hour)), "expired after the validity")
		})
	}

	other, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	assert.NotEqual(t, c.Server.CA, other.Server.CA, "each transfer has its own CA")
}

func TestGenerateCertsBadValidity(t *testing.T) {
	_, err := GenerateCerts(0)
	assert.ErrorContains(t, err, "validity must be positive")
}

func TestCertsWriteDir(t *testing.T) {
	c, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "out")
	require.NoError(t, c.WriteDir(dir))
	// Writing again (a retried controller step) replaces the files.
	require.NoError(t, c.WriteDir(dir))

	for _, side := range []struct {
		dir string
		b   Bundle
	}{{ServerDir, c.Server}, {ClientDir, c.Client}} {
		d := filepath.Join(dir, side.dir)
		fi, err := os.Stat(d)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), d)
		entries, err := os.ReadDir(d)
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		assert.ElementsMatch(t, []string{CAFile, CertFile, KeyFile}, names, "exactly the Secret keys, no CA key")
		for name, want := range side.b.Data() {
			p := filepath.Join(d, name)
			fi, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, got), p)
		}
	}
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

func TestLoadBundle(t *testing.T) {
	c, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	other, err := GenerateCerts(time.Hour)
	require.NoError(t, err)

	cases := []struct {
		name    string
		files   map[string][]byte
		role    string
		wantErr string
	}{
		{name: "server bundle", files: c.Server.Data(), role: ServerName},
		{name: "client bundle", files: c.Client.Data(), role: ClientName},
		{name: "missing key", files: map[string][]byte{CAFile: c.Server.CA, CertFile: c.Server.Cert}, role: ServerName, wantErr: "tls.key: no such file"},
		{name: "missing CA", files: map[string][]byte{CertFile: c.Server.Cert, KeyFile: c.Server.Key}, role: ServerName, wantErr: "ca.crt: no such file"},
		{name: "key of another certificate", files: map[string][]byte{CAFile: c.Server.CA, CertFile: c.Server.Cert, KeyFile: c.Client.Key}, role: ServerName, wantErr: "tls.key does not belong to tls.crt"},
		{name: "certificate of another CA", files: map[string][]byte{CAFile: c.Server.CA, CertFile: other.Server.Cert, KeyFile: other.Server.Key}, role: ServerName, wantErr: "not a valid ferry-transfer-server certificate of the CA in ca.crt"},
		{name: "client bundle used by the server", files: c.Client.Data(), role: ServerName, wantErr: "not a valid ferry-transfer-server certificate"},
		{name: "server bundle used by the client", files: c.Server.Data(), role: ClientName, wantErr: "not a valid ferry-transfer-client certificate"},
		{name: "garbage certificate", files: map[string][]byte{CAFile: c.Server.CA, CertFile: []byte("nope"), KeyFile: c.Server.Key}, role: ServerName, wantErr: "tls.crt: no PEM certificate"},
		{name: "garbage key", files: map[string][]byte{CAFile: c.Server.CA, CertFile: c.Server.Cert, KeyFile: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, role: ServerName, wantErr: "tls.key: parsing private key"},
		{name: "leaf as CA", files: map[string][]byte{CAFile: c.Server.Cert, CertFile: c.Server.Cert, KeyFile: c.Server.Key}, role: ServerName, wantErr: "ca.crt: not a CA certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
			}
			b, err := LoadBundle(dir, tc.role)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.files[CertFile], b.Cert)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Contains(t, err.Error(), dir, "the error names the directory")
			assert.NotContains(t, err.Error(), "PRIVATE KEY", "no key material in errors")
		})
	}
}
