package stack

import (
	"context"
	"fmt"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/test/images"
)

// The identities ferry runs as on the stack, from deploy/ as an admin installs them: the data
// mover's own service account on the source (deploy/datamover: InstallDatamover; deploy/source
// also binds Velero's, DatamoverServiceAccount, for the sidecar form in Velero's pod),
// ferry-target on the target (deploy/target).
const (
	DatamoverNamespace, DatamoverServiceAccount = "velero", "velero"
	TargetNamespace, TargetServiceAccount       = "ferry-system", "ferry-target"
	// transferPolicyParams is the ConfigMap deploy/*/transfer-policy.yaml binds the policy to.
	transferPolicyParams = "ferry-transfer-policy"
)

// TransferImage is the transfer image the stack's ferry-config names unless a test sets
// transferImage itself, and the one the admission policy's parameters allow: ferry's image in
// the source's registry (both clusters' nodes pull from either registry).
func (s *Stack) TransferImage() string { return s.Source.Image(images.DatamoverName) }

// ferryIdentities are kubeconfigs holding short-lived tokens of ferry's identities.
type ferryIdentities struct {
	// Target is the kubeconfig (contents) the data mover reaches the target cluster with.
	Target []byte
}

// installFerry applies ferry's RBAC and admission policy from deploy/ to both clusters, once per
// stack, and makes the data mover's kubeconfigs from tokens of those identities: every test then
// shows that what deploy/ grants is enough, and the admin kubeconfig is never the data mover's.
// InstallFerry is installFerry for tests that need ferry's identities and policy in place
// without configuring or starting the data mover.
func (s *Stack) InstallFerry(ctx context.Context) error {
	_, err := s.installFerry(ctx)
	return err
}

func (s *Stack) installFerry(ctx context.Context) (ferryIdentities, error) {
	s.ferryOnce.Do(func() { s.ferry, s.ferryErr = s.doInstallFerry(ctx) })
	return s.ferry, s.ferryErr
}

func (s *Stack) doInstallFerry(ctx context.Context) (ferryIdentities, error) {
	root, err := RepoRoot()
	if err != nil {
		return ferryIdentities{}, err
	}
	deploy := func(p string) string { return filepath.Join(root, "deploy", p) }
	src, dst := s.Source, s.Target
	sourceArgs := []string{"apply", "-n", src.VeleroNamespace, "-f", deploy("source/rbac.yaml"),
		"-f", deploy("policy/policy.yaml"), "-f", deploy("source/transfer-policy.yaml")}
	if s.OpenShift {
		sourceArgs = append(sourceArgs, "-f", deploy("openshift/scc.yaml"))
	}
	if out, err := src.Kubectl(ctx, sourceArgs...); err != nil {
		return ferryIdentities{}, fmt.Errorf("installing ferry's source identities: %w\n%s", err, out)
	}
	if out, err := dst.Kubectl(ctx, "apply", "-k", deploy("target")); err != nil {
		return ferryIdentities{}, fmt.Errorf("installing ferry's target identities: %w\n%s", err, out)
	}
	if s.OpenShift {
		if out, err := dst.Kubectl(ctx, "apply", "-f", deploy("openshift/scc.yaml")); err != nil {
			return ferryIdentities{}, fmt.Errorf("installing the target's SCC: %w\n%s", err, out)
		}
	}
	target, err := dst.tokenKubeconfig(ctx, TargetNamespace, TargetServiceAccount, dst.podServer())
	if err != nil {
		return ferryIdentities{}, err
	}
	return ferryIdentities{Target: target}, nil
}

// setTransferImage sets the image the transfer-pod policy allows on both clusters (the
// parameters an admin keeps in step with ferry-config's transferImage).
func (s *Stack) setTransferImage(ctx context.Context, image string) error {
	for _, side := range []struct {
		c  *Cluster
		ns string
	}{{s.Source, s.Source.VeleroNamespace}, {s.Target, TargetNamespace}} {
		cms := side.c.Kube.CoreV1().ConfigMaps(side.ns)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm, err := cms.Get(ctx, transferPolicyParams, metav1.GetOptions{})
			if err != nil || cm.Data["images"] == image {
				return err
			}
			cm.Data["images"] = image
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: the transfer policy's parameters: %w", side.c.Name, err)
		}
	}
	return nil
}

// TokenKubeconfig is a kubeconfig for the cluster holding a 24-hour token of service account
// ns/name (TokenRequest, as `kubectl create token` makes). It holds a credential: never log it.
func (c *Cluster) TokenKubeconfig(ctx context.Context, ns, name string) ([]byte, error) {
	return c.tokenKubeconfig(ctx, ns, name, c.Server)
}

// podServer is the API server's address as pods of either cluster reach it: the node's relay
// (the data mover runs in a pod; this machine's processes cannot reach it there).
func (c *Cluster) podServer() string {
	return "https://" + hostPort(c.NodeIP(), apiServerPort)
}

func (c *Cluster) tokenKubeconfig(ctx context.Context, ns, name, server string) ([]byte, error) {
	day := int64(24 * 3600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &day}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: a token of %s/%s: %w", c.Name, ns, name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[c.Name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.ca.pem}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: name, Namespace: ns}
	kc.CurrentContext = c.Name
	return clientcmd.Write(*kc)
}
