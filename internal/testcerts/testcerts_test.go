package testcerts

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	ca, err := NewCA("test-ca")
	require.NoError(t, err)
	kp, err := ca.Issue("kube-apiserver", []string{"127.9.8.10"}, []string{"kubernetes.default.svc"}, x509.ExtKeyUsageServerAuth)
	require.NoError(t, err)
	block, _ := pem.Decode(kp.CertPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.9.8.10", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.NoError(t, err, "valid for its IP")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"})
	assert.NoError(t, err, "valid for its DNS name")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.9.8.11"})
	assert.Error(t, err, "not valid for another IP")
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.Error(t, err, "a serving cert is no client cert")
	_, err = kp.TLS()
	assert.NoError(t, err, "key matches cert")

	other, err := NewCA("other")
	require.NoError(t, err)
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: otherPool, DNSName: "127.9.8.10"})
	assert.Error(t, err, "another cluster's CA does not trust it")

	_, err = ca.Issue("bad", []string{"not-an-ip"}, nil)
	assert.ErrorContains(t, err, `bad IP "not-an-ip"`)
}
