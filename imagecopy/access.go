package imagecopy

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
)

// tokenUser is the user name sent with a bearer token; OpenShift's registry ignores it but basic
// auth needs one.
const tokenUser = "ferry"

// Access is how ferry reaches one registry: where, as whom, and which TLS it trusts.
type Access struct {
	// Host is host[:port], no scheme.
	Host string
	// Username and Password; both empty for anonymous access. Never logged.
	Username, Password string
	// CredentialsFrom says where the credentials came from, for logs ("Secret velero/x",
	// "the service-account token", "none").
	CredentialsFrom string
	// RootCAs is the system's pool plus registryCASecret's CA; nil means the system's.
	RootCAs *x509.CertPool
	// Insecure skips TLS verification and allows plain HTTP: ferry-config registryInsecure, an
	// explicit opt-in only.
	Insecure bool
}

// String describes the access without its secrets.
func (a Access) String() string {
	s := a.Host + " (credentials: " + a.CredentialsFrom
	if a.Insecure {
		s += ", TLS verification OFF"
	}
	return s + ")"
}

// GoString keeps %#v from printing the password.
func (a Access) GoString() string { return "imagecopy.Access{" + a.String() + "}" }

// RegistryServiceAccount is the service account whose short-lived tokens are ferry's default
// registry credentials: in Velero's namespace on the source (pull) and in TargetNamespace on
// the target (push). It may only read, or push, images (deploy/): the data mover's own token,
// which may do much more, is never sent to a registry.
const (
	RegistryServiceAccount = "ferry-registry"
	// TargetNamespace is where deploy/target puts ferry's identities on the target cluster.
	TargetNamespace = "ferry-system"
	// registryTokenLifetime is long enough for one stream's copy, short enough that a token a
	// registry saw soon stops mattering.
	registryTokenLifetime = time.Hour
)

// SourceAccess is how the sidecar pulls from the source registry host: ferry-config's
// sourceRegistrySecret, else a fresh token of the source's ferry-registry service account.
func SourceAccess(ctx context.Context, source *kube.Clients, cfg *config.Config, host string) (Access, error) {
	return access(ctx, source, cfg, host, cfg.SourceRegistrySecret, source, source.Namespace, "sourceRegistrySecret")
}

// TargetAccess is how the sidecar pushes to the target registry host: ferry-config's
// targetRegistrySecret (in Velero's namespace on the source cluster, next to ferry-config), else
// a fresh token of the target's ferry-registry service account.
func TargetAccess(ctx context.Context, source, target *kube.Clients, cfg *config.Config, host string) (Access, error) {
	return access(ctx, source, cfg, host, cfg.TargetRegistrySecret, target, TargetNamespace, "targetRegistrySecret")
}

// access resolves the credentials for host — the Secret secretName in Velero's namespace, else
// a token of RegistryServiceAccount in tokenNS of cluster tokenFrom — and the CA to trust.
func access(ctx context.Context, source *kube.Clients, cfg *config.Config, host, secretName string, tokenFrom *kube.Clients, tokenNS, secretKey string) (Access, error) {
	a := Access{Host: host, Insecure: cfg.RegistryInsecure}
	if secretName != "" {
		secret, err := source.Kube.CoreV1().Secrets(source.Namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return Access{}, configured(fmt.Errorf("reading registry credentials Secret %s/%s: %w", source.Namespace, secretName, err))
		}
		if a.Username, a.Password, err = credentialsFromSecret(secret, host); err != nil {
			return Access{}, config.Error(err)
		}
		a.CredentialsFrom = "Secret " + source.Namespace + "/" + secretName
	} else {
		token, err := registryToken(ctx, tokenFrom, tokenNS, secretKey)
		if err != nil {
			return Access{}, err
		}
		a.Username, a.Password = tokenUser, token
		a.CredentialsFrom = "a token of service account " + tokenNS + "/" + RegistryServiceAccount
	}
	if cfg.RegistryCASecret != "" {
		secret, err := source.Kube.CoreV1().Secrets(source.Namespace).Get(ctx, cfg.RegistryCASecret, metav1.GetOptions{})
		if err != nil {
			return Access{}, configured(fmt.Errorf("reading registry CA Secret %s/%s: %w", source.Namespace, cfg.RegistryCASecret, err))
		}
		pool, err := caPool(secret)
		if err != nil {
			return Access{}, config.Error(err)
		}
		a.RootCAs = pool
	}
	return a, nil
}

// configured makes a missing Secret that ferry-config names a configuration mistake; other
// errors reading it (an API server briefly away) stay what they are.
func configured(err error) error {
	if apierrors.IsNotFound(err) {
		return config.Error(err)
	}
	return err
}

// registryToken asks the API server for a short-lived token of RegistryServiceAccount in
// namespace. Without that account (or the right to ask) there is no safe default: the fix is
// deploy/'s manifests or a Secret named in ferry-config (secretKey).
func registryToken(ctx context.Context, c *kube.Clients, namespace, secretKey string) (string, error) {
	seconds := int64(registryTokenLifetime.Seconds())
	tr, err := c.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, RegistryServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return "", config.Error(fmt.Errorf("cannot get a registry token of service account %s/%s (%v): apply ferry's deploy/ manifests, or name a Secret with registry credentials in ferry-config %s", namespace, RegistryServiceAccount, err, secretKey))
	}
	if err != nil {
		return "", fmt.Errorf("getting a registry token of service account %s/%s: %w", namespace, RegistryServiceAccount, err)
	}
	return tr.Status.Token, nil
}

// credentialsFromSecret reads credentials for host from a Secret: a docker config
// (kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg), or keys "username" and "password",
// or key "token".
func credentialsFromSecret(s *corev1.Secret, host string) (user, password string, err error) {
	id := s.Namespace + "/" + s.Name
	var auths map[string]dockerAuth
	switch {
	case len(s.Data[corev1.DockerConfigJsonKey]) > 0:
		var cfg struct {
			Auths map[string]dockerAuth `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return "", "", fmt.Errorf("Secret %s: key %s is not a docker config: %v", id, corev1.DockerConfigJsonKey, err)
		}
		auths = cfg.Auths
	case len(s.Data[corev1.DockerConfigKey]) > 0:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths); err != nil {
			return "", "", fmt.Errorf("Secret %s: key %s is not a docker config: %v", id, corev1.DockerConfigKey, err)
		}
	case len(s.Data["token"]) > 0:
		return tokenUser, strings.TrimSpace(string(s.Data["token"])), nil
	case len(s.Data["username"]) > 0 && len(s.Data["password"]) > 0:
		return string(s.Data["username"]), string(s.Data["password"]), nil
	default:
		return "", "", fmt.Errorf("Secret %s holds no registry credentials: want key %s, %s, token, or username and password",
			id, corev1.DockerConfigJsonKey, corev1.DockerConfigKey)
	}
	var hosts []string
	for key, a := range auths {
		if h := registryHost(key); h != strings.ToLower(host) {
			hosts = append(hosts, h)
			continue
		}
		return a.credentials(id, key)
	}
	sort.Strings(hosts)
	return "", "", fmt.Errorf("Secret %s has no credentials for registry %s (it has: %s)", id, host, strings.Join(hosts, ", "))
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

func (a dockerAuth) credentials(secret, key string) (string, string, error) {
	switch {
	case a.Username != "" && a.Password != "":
		return a.Username, a.Password, nil
	case a.Auth != "":
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("Secret %s: the auth field for %s is not base64", secret, key)
		}
		user, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return "", "", fmt.Errorf("Secret %s: the auth field for %s is not user:password", secret, key)
		}
		return user, pass, nil
	case a.IdentityToken != "":
		return tokenUser, a.IdentityToken, nil
	}
	return "", "", fmt.Errorf("Secret %s: the entry for %s has no auth, username/password or identitytoken", secret, key)
}

// registryHost normalises a docker config key ("https://host:5000/v2/", "host") to host[:port].
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	return strings.ToLower(host)
}

// caPool is the system's pool plus the PEM certificates in the Secret's key "ca.crt".
func caPool(s *corev1.Secret) (*x509.CertPool, error) {
	pem := s.Data["ca.crt"]
	if len(pem) == 0 {
		return nil, fmt.Errorf("registry CA Secret %s/%s has no key ca.crt", s.Namespace, s.Name)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("registry CA Secret %s/%s: key ca.crt holds no PEM certificate", s.Namespace, s.Name)
	}
	return pool, nil
}
