package imagecopy

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/testcerts"
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
	ca, err := testcerts.NewCA("test CA")
	require.NoError(t, err)
	return string(ca.PEM)
}

func TestTargetAccess(t *testing.T) {
	const host = "registry.target.example:5000"
	ca := testCAPEM(t)

	tests := []struct {
		name      string
		config    map[string]string
		secrets   []*corev1.Secret
		noAccount bool // the target has no ferry-registry service account
		wantUser  string
		wantPass  string
		wantFrom  string
		wantCA    bool
		wantErr   []string
	}{
		{
			name:     "default: a short-lived token of the target's ferry-registry service account, never the data mover's own",
			wantUser: tokenUser, wantPass: "token-of-ferry-system/ferry-registry-for-3600s", wantFrom: "a token of service account ferry-system/ferry-registry",
		},
		{
			name:      "no ferry-registry service account: the fix is named",
			noAccount: true,
			wantErr:   []string{"ferry-system/ferry-registry", "apply ferry's deploy/ manifests", "targetRegistrySecret"},
		},
		{
			name:     "docker config Secret, key with scheme and path",
			config:   map[string]string{"targetRegistrySecret": "reg"},
			secrets:  []*corev1.Secret{dockerConfigJSON("reg", "https://"+host+"/v2/", "alice", "s3cret")},
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
			wantUser: tokenUser, wantPass: "token-of-ferry-system/ferry-registry-for-3600s", wantFrom: "a token of service account ferry-system/ferry-registry", wantCA: true,
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
			target := clusterWithRegistryAccount(TargetNamespace, !tt.noAccount)
			cfg, err := config.Parse(tt.config)
			require.NoError(t, err)
			got, err := TargetAccess(context.Background(), source.Clients, target.Clients, cfg, host)
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
	source := clusterWithRegistryAccount(testutil.VeleroNamespace, true, secret("src", corev1.SecretTypeOpaque, map[string]string{"username": "s", "password": "p"}))
	source.Clients.Config = &rest.Config{BearerToken: "the data mover's own token"}
	cfg, err := config.Parse(map[string]string{"registryInsecure": "true"})
	require.NoError(t, err)
	got, err := SourceAccess(context.Background(), source.Clients, cfg, "internal:5000")
	require.NoError(t, err)
	assert.Equal(t, "token-of-velero/ferry-registry-for-3600s", got.Password, "a pull token of its own, not the data mover's")
	assert.True(t, got.Insecure)
	assert.Contains(t, got.String(), "TLS verification OFF")

	cfg.SourceRegistrySecret = "src"
	got, err = SourceAccess(context.Background(), source.Clients, cfg, "internal:5000")
	require.NoError(t, err)
	assert.Equal(t, "s", got.Username)
}

// clusterWithRegistryAccount is a fake cluster whose API server issues tokens for the
// ferry-registry service account in namespace, when it has one.
func clusterWithRegistryAccount(namespace string, hasAccount bool, objs ...runtimeObject) *testutil.Cluster {
	opts := []testutil.Option{testutil.WithObjects(objs...)}
	if hasAccount {
		opts = append(opts, testutil.TokensFor(namespace+"/"+RegistryServiceAccount))
	}
	return testutil.NewCluster(opts...)
}
