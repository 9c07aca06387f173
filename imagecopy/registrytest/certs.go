package registrytest

import (
	"crypto/x509"

	"github.com/ferry-dev/ferry/internal/testcerts"
)

// serverCertificate makes a throwaway CA and a server certificate it signs for 127.0.0.1 and
// localhost, returning PEM: the CA certificate, the server certificate and its key.
func serverCertificate() (caPEM, certPEM, keyPEM []byte, err error) {
	ca, err := testcerts.NewCA("ferry registrytest CA")
	if err != nil {
		return nil, nil, nil, err
	}
	kp, err := ca.Issue("127.0.0.1", []string{"127.0.0.1"}, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	return ca.PEM, kp.CertPEM, kp.KeyPEM, err
}
