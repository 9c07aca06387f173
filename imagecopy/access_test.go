package imagecopy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func secret(name string, typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: name}, Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func dockerConfigJSON(name, key, user, pass string) *corev1.Secret {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return secret(name, corev1.SecretTypeDockerConfigJson, map[string]string{
		corev1.DockerConfigJsonKey: fmt.Sprintf(`{"auths":{%q:{"auth":%q},"other.example":{"username":"o","password":"p"}}}`, key, auth),
	})
}

func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestTargetAccess(t *testing.T) {
	const host = "registry.target.example:5000"
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("rotated-token\n"), 0o600))
	ca := testCAPEM(t)

	tests := []struct {
		name     string
		config   map[string]string
		secrets  []*corev1.Secret
		target   *rest.Config
		wantUser string
		wantPass string
		wantFrom string
		wantCA   bool
		wantErr  []string
	}{
		{
			name:     "default: the target kubeconfig's token",
			target:   &rest.Config{BearerToken: "kubeconfig-token"},
			wantUser: tokenUser, wantPass: "kubeconfig-token", wantFrom: "the target kubeconfig token",
		},
		{
			name:     "a token file is read now, not cached",
			target:   &rest.Config{BearerToken: "stale", BearerTokenFile: tokenFile},
			wantUser: tokenUser, wantPass: "rotated-token", wantFrom: "the target kubeconfig token",
		},
		{
			name:     "no token: anonymous",
			target:   &rest.Config{},
			wantFrom: "none",
		},
		{
			name:     "docker config Secret, key with scheme and path",
			config:   map[string]string{"targetRegistrySecret": "reg"},
			secrets:  []*corev1.Secret{dockerConfigJSON("reg", "https://"+host+"/v2/", "alice", "s3cret")},
			target:   &rest.Config{BearerToken: "unused"},
			wantUser: "alice", wantPass: "s3cret", wantFrom: "Secret velero/reg",
		},
		{
			name:     "legacy dockercfg Secret",
			config:   map[string]string{"targetRegistrySecret": "reg"},
			secrets:  []*corev1.Secret{secret("reg", corev1.SecretTypeDockercfg, map[string]string{corev1.DockerConfigKey: `{"` + host + `":{"username":"bob","password":"pw"}}`})},
			wantUser: "bob", wantPass: "pw", wantFrom: "Secret velero/reg",
		},
		{
			name:     "username and password keys",
			config:   map[string]string{"targetRegistrySecret": "reg"},
			secrets:  []*corev1.Secret{secret("reg", corev1.SecretTypeOpaque, map[string]string{"username": "u", "password": "pa55word"})},
			wantUser: "u", wantPass: "pa55word", wantFrom: "Secret velero/reg",
		},
		{
			name:     "token key",
			config:   map[string]string{"targetRegistrySecret": "reg"},
			secrets:  []*corev1.Secret{secret("reg", corev1.SecretTypeOpaque, map[string]string{"token": "t0k"})},
			wantUser: tokenUser, wantPass: "t0k", wantFrom: "Secret velero/reg",
		},
		{
			name:    "docker config without this host names the hosts it has",
			config:  map[string]string{"targetRegistrySecret": "reg"},
			secrets: []*corev1.Secret{dockerConfigJSON("reg", "elsewhere.example", "a", "b")},
			wantErr: []string{"Secret velero/reg has no credentials for registry " + host, "elsewhere.example, other.example"},
		},
		{
			name:    "missing Secret is named",
			config:  map[string]string{"targetRegistrySecret": "nope"},
			wantErr: []string{"Secret velero/nope"},
		},
		{
			name:    "Secret without credentials",
			config:  map[string]string{"targetRegistrySecret": "reg"},
			secrets: []*corev1.Secret{secret("reg", corev1.SecretTypeOpaque, map[string]string{"foo": "bar"})},
			wantErr: []string{"Secret velero/reg holds no registry credentials"},
		},
		{
			name:     "CA Secret",
			config:   map[string]string{"registryCASecret": "ca"},
			secrets:  []*corev1.Secret{secret("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": ca})},
			wantFrom: "none", wantCA: true,
		},
		{
			name:    "CA Secret without a certificate",
			config:  map[string]string{"registryCASecret": "ca"},
			secrets: []*corev1.Secret{secret("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": "not pem"})},
			wantErr: []string{"velero/ca", "ca.crt holds no PEM certificate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtimeObject
			for _, s := range tt.secrets {
				objs = append(objs, s)
			}
			source := testutil.NewCluster(testutil.WithObjects(objs...))
			cfg, err := config.Parse(tt.config)
			require.NoError(t, err)
			got, err := TargetAccess(context.Background(), source.Clients, tt.target, cfg, host)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, s := range tt.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantUser, got.Username)
			assert.Equal(t, tt.wantPass, got.Password)
			assert.Equal(t, tt.wantFrom, got.CredentialsFrom)
			assert.Equal(t, tt.wantCA, got.RootCAs != nil)
			assert.False(t, got.Insecure)
			if got.Password != "" {
				assert.NotContains(t, got.String(), got.Password)
				assert.NotContains(t, fmt.Sprintf("%v %+v %#v", got, got, got), got.Password, "no formatting verb prints the password")
			}
		})
	}
}

func TestSourceAccessUsesItsOwnSecretAndInsecureOptIn(t *testing.T) {
	source := testutil.NewCluster(testutil.WithObjects(secret("src", corev1.SecretTypeOpaque, map[string]string{"username": "s", "password": "p"})))
	source.Clients.Config = &rest.Config{BearerToken: "sa-token"}
	cfg, err := config.Parse(map[string]string{"registryInsecure": "true"})
	require.NoError(t, err)
	got, err := SourceAccess(context.Background(), source.Clients, cfg, "internal:5000")
	require.NoError(t, err)
	assert.Equal(t, "sa-token", got.Password)
	assert.True(t, got.Insecure)
	assert.Contains(t, got.String(), "TLS verification OFF")

	cfg.SourceRegistrySecret = "src"
	got, err = SourceAccess(context.Background(), source.Clients, cfg, "internal:5000")
	require.NoError(t, err)
	assert.Equal(t, "s", got.Username)
}
