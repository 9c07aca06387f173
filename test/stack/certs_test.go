package stack

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	ca, err := newCA("test-ca")
	require.NoError(t, err)
	kp, err := ca.issue("kube-apiserver", []string{"127.9.8.10"}, []string{"kubernetes.default.svc"}, x509.ExtKeyUsageServerAuth)
	require.NoError(t, err)
	block, _ := pem.Decode(kp.certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.9.8.10", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.NoError(t, err, "valid for its IP")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"})
	assert.NoError(t, err, "valid for its DNS name")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.9.8.11"})
	assert.Error(t, err, "not valid for another IP")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.Error(t, err, "a serving cert is no client cert")
	_, err = kp.tlsCertificate()
	assert.NoError(t, err, "key matches cert")

	other, err := newCA("other")
	require.NoError(t, err)
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other.cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: otherPool, DNSName: "127.9.8.10"})
	assert.Error(t, err, "another cluster's CA does not trust it")

	_, err = ca.issue("bad", []string{"not-an-ip"}, nil)
	assert.ErrorContains(t, err, `bad IP "not-an-ip"`)
	assert.NotNil(t, net.ParseIP("127.9.8.10"))
}

func TestRandomToken(t *testing.T) {
	a, b := randomToken(16), randomToken(16)
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
}
