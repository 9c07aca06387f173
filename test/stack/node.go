package stack

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/ferry-dev/ferry/test/images"
)

// A real node is a network namespace made by the stack, like a small VM:
// containerd (its own root, state and socket), runc, the CNI bridge plugin, kubelet and
// kube-proxy run inside it, on the host's file system and PID namespace. Inside the namespace:
//   - a relay makes the cluster's API server reachable at its usual 127.x address (for kubelet
//     and kube-proxy), and at
//     <node IP>:6443, which the "kubernetes" Service's endpoints name (for pods, through
//     kube-proxy's ClusterIP rules; pods of the other cluster use it directly);
//   - both registries are on the link network (RegistryHost: containerd's pulls, pods);
//   - pods get addresses of the cluster's pod range on the bridge cni0 (host-local IPAM).
//
// The API server reaches the kubelet (logs, exec) through the stack's egress proxy, which dials
// inside the stack's net namespace: the host itself has no route to 198.18/15.

const (
	nodeKubeletPort = 10250
	proxyHealthPort = 10256
)

// node is one cluster's real node.
type node struct {
	ns         string
	ip         string
	runtimeDir string // /run/ferry/<pid>-b<block>/<cluster>: sockets, state, kubelet root
	dir        string // <cluster dir>/node: configs, logs, containerd's content and snapshots
	cgroup     string
	cniNetwork string

	containerd, kubelet, proxy *Process
	relay                      *relay
}

func (c *Cluster) newNode() *node {
	s := c.stack
	rt := filepath.Join(s.nodeAddrs.runtimeDir(), c.Name)
	return &node{
		ns:         s.nodeNet.nodeNS[c.index],
		ip:         s.nodeAddrs.nodeIP(c.index),
		runtimeDir: rt,
		dir:        filepath.Join(c.Dir, "node"),
		cgroup:     cgroupName(s.nodeAddrs, c.Name),
		cniNetwork: cgroupName(s.nodeAddrs, c.Name),
	}
}

func (n *node) socket() string          { return filepath.Join(n.runtimeDir, "containerd.sock") }
func (n *node) containerdState() string { return filepath.Join(n.runtimeDir, "containerd") }

// podLogsDir is in the runtime folder: kubelet links every container's log into the host's
// /var/log/containers (a fixed path), and a link into a folder named with the stack's pid can be
// told to be a dead stack's.
func (n *node) podLogsDir() string { return filepath.Join(n.runtimeDir, "pod-logs") }

// startNode brings up the cluster's node: relay, containerd, kubelet (until the Node is Ready),
// kube-proxy, and what pods need from the cluster (the "kubernetes" endpoints, the RBAC that
// lets the API server use the kubelet's API).
func (c *Cluster) startNode(ctx context.Context) error {
	s := c.stack
	n := c.newNode()
	c.node = n
	for _, d := range []string{n.runtimeDir, n.dir, filepath.Join(n.dir, "cni", "net.d"), filepath.Join(n.dir, "pki")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := makeNodeCgroup(n.cgroup); err != nil {
		return err
	}
	a := s.addrs
	api := hostPort(a.apiServer(c.index), apiServerPort)
	r, err := startRelayRoutes(n.ns, []relayRoute{
		{listen: api, target: api},
		{listen: hostPort(n.ip, apiServerPort), target: api},
	})
	if err != nil {
		return err
	}
	n.relay = r
	if err := c.applyNodeObjects(ctx); err != nil {
		return err
	}
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	return c.startKubeProxy(ctx)
}

// applyNodeObjects creates the objects a real node and its pods need: the "kubernetes" Service's
// endpoints (the API server runs with --endpoint-reconciler-type=none: its own address is a
// loopback address pods cannot reach, so they get the node relay's), and the binding that lets
// the API server's kubelet client read logs and exec (the kubelet authorizes with webhooks).
func (c *Cluster) applyNodeObjects(ctx context.Context) error {
	n := c.node
	ports := []corev1.EndpointPort{{Name: "https", Port: apiServerPort, Protocol: corev1.ProtocolTCP}}
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes"},
		Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: n.ip}}, Ports: ports}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubernetes", Labels: map[string]string{
			discoveryv1.LabelServiceName: "kubernetes",
			discoveryv1.LabelManagedBy:   "ferry-stack",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{n.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](apiServerPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ferry-stack:apiserver-kubelet"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: apiServerKubeletClient}},
	}
	// v1 Endpoints are deprecated (the API server warns on every write) but older clients still
	// read them; kube-proxy reads the slice.
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	quiet, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := quiet.CoreV1().Endpoints("default").Create(ctx, ep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubernetes Endpoints: %w", err)
	}
	if _, err := c.Kube.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubernetes EndpointSlice: %w", err)
	}
	if _, err := c.Kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ClusterRoleBinding %s: %w", binding.Name, err)
	}
	return nil
}

// startContainerd writes containerd's configuration and runs it in the node namespace.
func (c *Cluster) startContainerd(ctx context.Context) error {
	s := c.stack
	n := c.node
	certsDir := filepath.Join(n.dir, "containerd", "certs.d")
	for i := range 2 {
		host := s.Clusters()[i].RegistryHost
		dir := filepath.Join(certsDir, host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// The stack's registries speak plain HTTP.
		hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host, host)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	cni := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.cniNetwork,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": s.nodeAddrs.podCIDR(c.index), "gateway": s.nodeAddrs.podGateway(c.index)}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(n.runtimeDir, "cni-ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	cniJSON, err := json.MarshalIndent(cni, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "cni", "net.d", "10-ferry.conflist"), cniJSON, 0o644); err != nil {
		return err
	}
	state := n.containerdState()
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This machine may not lower oom_score_adj: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state folder, not /run/netns, so they are the stack's to find.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "runc"
        Root = %q

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(n.dir, "containerd", "root"), state, n.socket(), filepath.Join(n.dir, "containerd", "opt"),
		c.Image(images.PauseName), filepath.Join(n.runtimeDir, "runc"), filepath.Join(n.dir, "cni", "net.d"), certsDir)
	configPath := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name:  "containerd-" + c.Name,
		Path:  s.tools.containerd,
		Args:  []string{"--config", configPath, "--log-level", "info"},
		NetNS: n.ns,
	})
	if err != nil {
		return err
	}
	n.containerd = p
	// Its shims, runc and the containers are then in the node's cgroup too.
	if err := joinCgroup(n.cgroup, p.Pid()); err != nil {
		return err
	}
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, s.tools.ctr, "--address", n.socket(), "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr version: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// nodeKubeconfig writes a kubeconfig with a client certificate of the cluster's CA.
func (c *Cluster) nodeKubeconfig(path string, subject pkix.Name) error {
	kp, err := c.ca.issueSubject(subject, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.ca.pem}
	kc.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
	kc.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "node"}
	kc.CurrentContext = c.Name
	return clientcmd.WriteToFile(*kc, path)
}

// startKubelet runs kubelet in the node namespace and waits until its Node is Ready.
func (c *Cluster) startKubelet(ctx context.Context) error {
	s := c.stack
	n := c.node
	pki := filepath.Join(n.dir, "pki")
	kubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	if err := c.nodeKubeconfig(kubeconfig, pkix.Name{CommonName: "system:node:" + c.NodeName, Organization: []string{"system:nodes"}}); err != nil {
		return err
	}
	serving, err := c.ca.issue("system:node:"+c.NodeName, []string{n.ip}, []string{c.NodeName}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	crt, key, err := serving.write(pki, "kubelet")
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroups are v1 here and managed directly (no systemd); the node's pods live under its own
# cgroup, so two stacks' kubelets never see each other's pods as orphans.
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 10s
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 10s
    cacheUnauthorizedTTL: 5s
clusterDomain: cluster.local
# No cluster DNS on the stack: pods get an empty resolv.conf rather than the host's.
resolvConf: ""
podLogsDir: %s
volumePluginDir: %s
# A busy shared disk must not make the node evict the stack's pods.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
maxPods: 110
`, n.cgroup, n.socket(), n.ip, nodeKubeletPort, crt, key, filepath.Join(c.Dir, "pki", "ca.crt"),
		n.podLogsDir(), filepath.Join(n.dir, "volume-plugins"))
	configPath := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	// Every kubelet on this machine binds the same device-plugin socket
	// (/var/lib/kubelet/device-plugins/kubelet.sock: not under --root-dir), removing it first:
	// two starting at once fail one with "address already in use". So kubelets of every stack,
	// in any process, start one at a time (until their Node is Ready).
	unlock, err := lockFile(ctx, filepath.Join(runtimeRoot, "kubelet-start.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	p, err := s.StartProcess(ProcessSpec{
		Name: "kubelet-" + c.Name,
		Path: s.tools.kubelet,
		Args: []string{
			"--config=" + configPath,
			"--kubeconfig=" + kubeconfig,
			"--root-dir=" + filepath.Join(n.runtimeDir, "kubelet"),
			"--cert-dir=" + pki,
			"--hostname-override=" + c.NodeName,
			"--node-ip=" + n.ip,
			"--v=1",
		},
		NetNS: n.ns,
	})
	if err != nil {
		return err
	}
	n.kubelet = p
	if err := joinCgroup(n.cgroup, p.Pid()); err != nil {
		return err
	}
	return waitReady(ctx, p, 3*time.Minute, func(ctx context.Context) error {
		node, err := c.Kube.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", c.NodeName, cond.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", c.NodeName)
	})
}

// startKubeProxy runs kube-proxy (iptables mode) in the node namespace.
func (c *Cluster) startKubeProxy(ctx context.Context) error {
	s := c.stack
	n := c.node
	kubeconfig := filepath.Join(n.dir, "kube-proxy.kubeconfig")
	if err := c.nodeKubeconfig(kubeconfig, pkix.Name{CommonName: "system:kube-proxy"}); err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# conntrack limits are host-wide (read-only in a network namespace): leave them alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, c.NodeName, s.nodeAddrs.podCIDR(c.index), proxyHealthPort)
	configPath := filepath.Join(n.dir, "kube-proxy.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name:  "kube-proxy-" + c.Name,
		Path:  s.tools.kubeProxy,
		Args:  []string{"--config=" + configPath, "--v=1"},
		NetNS: n.ns,
	})
	if err != nil {
		return err
	}
	n.proxy = p
	if err := joinCgroup(n.cgroup, p.Pid()); err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
		return dialInNetNS(n.ns, network, addr)
	}}}
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, hc, fmt.Sprintf("http://127.0.0.1:%d/healthz", proxyHealthPort), nil, "")
	})
}

// stopNode stops kubelet and kube-proxy, kills every container (and containerd with its shims:
// all are in the node's cgroup), and removes the node's mounts, cgroups and CNI results. The
// namespace goes with the stack's network.
func (c *Cluster) stopNode() error {
	n := c.node
	if n == nil {
		return nil
	}
	var errs []error
	for _, p := range []*Process{n.kubelet, n.proxy} {
		if p != nil {
			errs = append(errs, p.Stop(10*time.Second))
		}
	}
	// containerd would restart nothing now; the shims and containers are killed with it.
	if n.containerd != nil {
		errs = append(errs, n.containerd.Kill())
	}
	errs = append(errs, killCgroup(n.cgroup))
	if n.relay != nil {
		n.relay.Close()
	}
	errs = append(errs, unmountUnder(n.runtimeDir), unmountUnder(n.dir))
	removeCNIResults(n.cniNetwork)
	removeSandboxCNIResults(n.containerdState())
	removeContainerLogLinks(func(target string) bool { return strings.HasPrefix(target, n.runtimeDir+"/") })
	return errors.Join(errs...)
}
