package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// apiServerKubeletClient is the user the API server presents to kubelets.
const apiServerKubeletClient = "kube-apiserver-kubelet-client"

// startAPIServer generates the cluster's CA, serving and kubelet-client certificates,
// service-account key and admin token, and runs kube-apiserver against the stack's etcd.
func (c *Cluster) startAPIServer(ctx context.Context) error {
	s := c.stack
	ip := s.addrs.apiServer(c.index)
	pki := filepath.Join(c.Dir, "pki")
	var err error
	if c.ca, err = newCA("ferry-" + c.Name + "-ca"); err != nil {
		return err
	}
	caPath := filepath.Join(pki, "ca.crt")
	if err := os.WriteFile(caPath, c.ca.pem, 0o644); err != nil {
		return err
	}
	ips := []string{ip, c.kubernetesServiceIP(), c.NodeIP()} // the node's relay: how pods reach it
	serving, err := c.ca.issue("kube-apiserver", ips,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	servingCrt, servingKey, err := serving.write(pki, "apiserver")
	if err != nil {
		return err
	}
	// The API server presents this to kubelets (logs, exec), which verify it against the
	// cluster CA.
	kubeletClient, err := c.ca.issue(apiServerKubeletClient, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	kcCrt, kcKey, err := kubeletClient.write(pki, "apiserver-kubelet-client")
	if err != nil {
		return err
	}
	saKey, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	saKeyPath := filepath.Join(pki, "sa.key")
	if err := os.WriteFile(saKeyPath, saKey, 0o600); err != nil {
		return err
	}
	c.token = randomToken(24)
	tokenFile := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(c.token+",admin,admin-uid,\"system:masters\"\n"), 0o600); err != nil {
		return err
	}

	args := []string{
		"--etcd-servers=" + s.etcdURL(),
		"--etcd-prefix=/ferry/" + c.Name,
		"--bind-address=" + ip, "--advertise-address=" + ip,
		"--secure-port=" + fmt.Sprint(apiServerPort),
		"--tls-cert-file=" + servingCrt, "--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + caPath,
		"--token-auth-file=" + tokenFile,
		// kubelets authenticate as system:node:<name> and get what the Node authorizer allows
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKeyPath,
		"--service-account-signing-key-file=" + saKeyPath,
		"--service-cluster-ip-range=" + c.serviceCIDR(),
		// The "kubernetes" Service would point at a loopback address, which the
		// reconciler refuses.
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=" + caPath,
		"--kubelet-client-certificate=" + kcCrt, "--kubelet-client-key=" + kcKey,
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + pki,
		"--v=1",
	}
	// The kubelets are at node addresses only the stack's net namespace routes to.
	egress := filepath.Join(pki, "egress-selector.yaml")
	if err := os.WriteFile(egress, []byte(s.egress.egressConfig()), 0o644); err != nil {
		return err
	}
	args = append(args, "--egress-selector-config-file="+egress)
	c.apiServerArgs = args
	return c.runAPIServer(ctx)
}

// StopAPIServer kills the cluster's kube-apiserver (SIGKILL, as a crashed or fenced control
// plane): clients see refused connections until StartAPIServer. Its data stays in etcd.
func (c *Cluster) StopAPIServer() error {
	return c.apiServer.Kill()
}

// StartAPIServer starts the kube-apiserver StopAPIServer stopped, with the same address,
// certificates and tokens, and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if exited, _ := c.apiServer.Exited(); !exited {
		return fmt.Errorf("kube-apiserver of %s is running", c.Name)
	}
	return c.runAPIServer(ctx)
}

// runAPIServer starts kube-apiserver with the arguments startAPIServer made and waits until it
// is ready.
func (c *Cluster) runAPIServer(ctx context.Context) error {
	p, err := c.stack.StartProcess(ProcessSpec{
		Name: "kube-apiserver-" + c.Name,
		Path: c.stack.tools.apiServer,
		Args: c.apiServerArgs,
	})
	if err != nil {
		return err
	}
	c.apiServer = p
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	auth := http.Header{"Authorization": {"Bearer " + c.token}}
	return waitReady(ctx, p, 2*time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, hc, c.Server+"/readyz", auth, "")
	})
}
