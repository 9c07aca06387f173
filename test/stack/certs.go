package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/internal/testcerts"
)

// certAuthority is one cluster's CA: it signs the API server's serving cert, the kubelet (pod
// runner) serving cert and the API server's kubelet client cert.
type certAuthority struct {
	*testcerts.CA
	cert *x509.Certificate
	pem  []byte
}

func newCA(commonName string) (*certAuthority, error) {
	ca, err := testcerts.NewCA(commonName)
	if err != nil {
		return nil, err
	}
	return &certAuthority{CA: ca, cert: ca.Cert, pem: ca.PEM}, nil
}

// keyPair is a signed certificate and its key, PEM encoded.
type keyPair struct {
	certPEM, keyPEM []byte
}

// issue signs a leaf certificate. ips and dnsNames become SANs; usage picks server or client auth.
func (ca *certAuthority) issue(commonName string, ips []string, dnsNames []string, usage ...x509.ExtKeyUsage) (keyPair, error) {
	return ca.issueSubject(pkix.Name{CommonName: commonName}, ips, dnsNames, usage...)
}

// issueSubject is issue with a full subject: a client certificate's organizations are its
// groups to the API server (system:nodes for a kubelet).
func (ca *certAuthority) issueSubject(subject pkix.Name, ips []string, dnsNames []string, usage ...x509.ExtKeyUsage) (keyPair, error) {
	kp, err := ca.IssueSubject(subject, ips, dnsNames, usage...)
	return keyPair{certPEM: kp.CertPEM, keyPEM: kp.KeyPEM}, err
}

func (kp keyPair) tlsCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(kp.certPEM, kp.keyPEM)
}

// write stores the pair as dir/name.crt and dir/name.key and returns both paths.
func (kp keyPair) write(dir, name string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, kp.certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, os.WriteFile(keyPath, kp.keyPEM, 0o600)
}

// newServiceAccountKey returns a PEM ECDSA private key the API server signs service-account
// tokens with (and, its public half being derivable, also verifies them with).
func newServiceAccountKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return testcerts.PEM("EC PRIVATE KEY", der), nil
}

// randomToken returns a random hex string of n bytes of entropy (tokens, S3 keys).
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", b)
}
