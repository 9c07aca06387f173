package dataplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside a certificate directory. They are the keys of a Kubernetes TLS Secret
// (plus ca.crt), so a Secret mounted as a directory is a valid certificate directory as is.
const (
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Subdirectories written by Certs.WriteDir.
const (
	ServerDir = "server"
	ClientDir = "client"
)

// Names carried by the leaf certificates. Each side checks that the peer's certificate carries
// the other side's name, so the holder of the client key cannot pose as the server (both leaves
// are signed by the same per-transfer CA).
const (
	ServerName = "ferry-transfer-server"
	ClientName = "ferry-transfer-client"
)

// DefaultCertValidity is how long a transfer's certificates are valid: long enough for a
// transfer of many terabytes with retries, short enough that a leaked key soon stops mattering.
const DefaultCertValidity = 7 * 24 * time.Hour

// clockSkew backdates certificates: the source and target clusters' clocks may differ.
const clockSkew = time.Hour

// Bundle is one side's TLS material, PEM encoded.
type Bundle struct {
	CA   []byte // the transfer's CA certificate (ca.crt)
	Cert []byte // this side's certificate (tls.crt)
	Key  []byte // this side's private key, PKCS #8 (tls.key)
}

// Certs is the TLS material of one transfer: a server bundle for `serve` and a client bundle
// for `send`. The CA's private key is not part of it: it is discarded once both leaves are
// signed, so nobody can mint further certificates for the transfer.
type Certs struct {
	Server Bundle
	Client Bundle
}

// GenerateCerts makes a fresh CA and a server and a client certificate signed by it, all ECDSA
// P-256, valid for validity (from an hour ago, to absorb clock skew between clusters).
func GenerateCerts(validity time.Duration) (*Certs, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("certificate validity must be positive, got %s", validity)
	}
	notBefore := time.Now().Add(-clockSkew)
	notAfter := notBefore.Add(clockSkew + validity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTemplate := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "ferry-transfer-ca", Organization: []string{"ferry"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs the two leaves only, never an intermediate
	}
	caDER, caCert, err := sign(caTemplate, nil, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	caPEM := pemBlock("CERTIFICATE", caDER)

	leaf := func(name string, usage x509.ExtKeyUsage) (Bundle, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Bundle{}, fmt.Errorf("generating %s key: %w", name, err)
		}
		der, _, err := sign(&x509.Certificate{
			Subject:     pkix.Name{CommonName: name, Organization: []string{"ferry"}},
			DNSNames:    []string{name},
			NotBefore:   notBefore,
			NotAfter:    notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}, caCert, key.Public(), caKey)
		if err != nil {
			return Bundle{}, fmt.Errorf("signing %s certificate: %w", name, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return Bundle{}, fmt.Errorf("encoding %s key: %w", name, err)
		}
		return Bundle{CA: caPEM, Cert: pemBlock("CERTIFICATE", der), Key: pemBlock("PRIVATE KEY", keyDER)}, nil
	}
	server, err := leaf(ServerName, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	client, err := leaf(ClientName, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &Certs{Server: server, Client: client}, nil
}

// sign creates a certificate from template signed by parent (nil: self-signed) with signer.
func sign(template, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	template.SerialNumber = serial
	if parent == nil {
		parent = template
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return der, cert, err
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Data returns the bundle as Secret data (file name → content).
func (b *Bundle) Data() map[string][]byte {
	return map[string][]byte{CAFile: b.CA, CertFile: b.Cert, KeyFile: b.Key}
}

// WriteDir writes the bundle's three files into dir (created 0700 if missing), each 0600.
func (b *Bundle) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// MkdirAll leaves an existing directory's mode alone: tighten it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	for name, content := range b.Data() {
		if err := writeFileAtomic(filepath.Join(dir, name), content, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// privateCerts returns the certificate directory stunnel should read: dir itself, or a copy of
// b in work when dir's key may be read by other users. A Secret volume's files are root's, made
// group-readable for a pod's fsGroup and readable by all for a non-root client (which has no
// fsGroup): stunnel would warn about the key on every connection.
func privateCerts(dir, work string, b *Bundle) (string, error) {
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err == nil && fi.Mode().Perm()&0o077 == 0 {
		return dir, nil
	}
	private := filepath.Join(work, "certs")
	if err := b.WriteDir(private); err != nil {
		return "", fmt.Errorf("copying the certificates: %w", err)
	}
	return private, nil
}

// WriteDir writes dir/server and dir/client (see Bundle.WriteDir).
func (c *Certs) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := c.Server.WriteDir(filepath.Join(dir, ServerDir)); err != nil {
		return err
	}
	return c.Client.WriteDir(filepath.Join(dir, ClientDir))
}

// writeFileAtomic replaces path with content: a temporary file created 0600 from the start
// (a key is never readable by others, not even briefly), then renamed into place.
func writeFileAtomic(path string, content []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// LoadBundle reads and checks a certificate directory: the three files exist, the key matches
// the certificate, the certificate is valid now and chains to the CA, and it carries the
// expected name and usage for role (ServerName or ClientName). Errors name the directory and
// the file, so a wrongly mounted Secret is easy to spot; they never contain key material.
func LoadBundle(dir, role string) (*Bundle, error) {
	var b Bundle
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{CAFile, &b.CA}, {CertFile, &b.Cert}, {KeyFile, &b.Key}} {
		content, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
		}
		*f.dst = content
	}
	if err := b.Verify(role, time.Now()); err != nil {
		return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	return &b, nil
}

// Verify checks the bundle as LoadBundle describes, at time now.
func (b *Bundle) Verify(role string, now time.Time) error {
	ca, err := parseCertPEM(b.CA)
	if err != nil {
		return fmt.Errorf("%s: %w", CAFile, err)
	}
	if !ca.IsCA {
		return fmt.Errorf("%s: not a CA certificate", CAFile)
	}
	cert, err := parseCertPEM(b.Cert)
	if err != nil {
		return fmt.Errorf("%s: %w", CertFile, err)
	}
	key, err := parseKeyPEM(b.Key)
	if err != nil {
		return fmt.Errorf("%s: %w", KeyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%s does not belong to %s", KeyFile, CertFile)
	}
	usage := x509.ExtKeyUsageServerAuth
	if role == ClientName {
		usage = x509.ExtKeyUsageClientAuth
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: roots, CurrentTime: now, DNSName: role, KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return fmt.Errorf("%s is not a valid %s certificate of the CA in %s: %w", CertFile, role, CAFile, err)
	}
	return nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		// The parser's message never quotes the key bytes.
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key cannot sign")
	}
	return signer, nil
}
