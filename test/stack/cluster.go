package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	velerov2alpha1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v2alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

// VeleroNamespace is Velero's namespace in both clusters.
const VeleroNamespace = "velero"

// Cluster is one cluster of the stack: an API server with its controller manager and scheduler,
// registry, node and Velero server.
type Cluster struct {
	// Name is "source" or "target".
	Name string
	// Dir is the cluster's folder under the stack's Dir.
	Dir string
	// Server is the API server URL; Kubeconfig the path of an admin kubeconfig for it.
	Server     string
	Kubeconfig string
	// Config is the admin rest.Config (high QPS: it is a test client).
	Config *rest.Config
	// Kube, Dynamic and Client are admin clients; Client (controller-runtime) knows the core
	// and Velero types.
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Client  crclient.Client
	// VeleroNamespace is where Velero's objects live.
	VeleroNamespace string
	// RegistryHost is the cluster's internal registry, host:port, plain HTTP, as image
	// references name it: an address of the link network, reached by both clusters' nodes and
	// pods (a relay to the registry process). This machine's processes cannot reach it: they use
	// RegistryFromHost, the same registry.
	RegistryHost string
	// RegistryFromHost is the registry's address for this machine's processes (tests pushing
	// images, registry clients): loopback, where the registry process listens.
	RegistryFromHost string
	// NodeName is the cluster's one Node, its kubelet's.
	NodeName string
	// NetNS is the network namespace Velero (and its plugins) run in. Inside it, the host
	// services Velero needs are reachable at their usual addresses (see RelayedAddresses).
	NetNS string
	// PluginDir is Velero's plugin folder.
	PluginDir string
	// PodKubeconfig is an admin kubeconfig that works from inside pods of either cluster: its
	// server is the API server relay at the node's address.
	PodKubeconfig string

	stack     *Stack
	index     int
	token     string
	ca        *certAuthority
	apiServer *Process
	// apiServerArgs start it again after StopAPIServer.
	apiServerArgs []string
	kcm           *Process
	registry      *Process
	registryRelay *relay
	velero        *Process
	relay         *relay
	node          *node
	scheduler     *Process
	lb            *loadBalancer
}

func newCluster(s *Stack, index int, name string) *Cluster {
	return &Cluster{
		Name:             name,
		Dir:              filepath.Join(s.Dir, name),
		Server:           "https://" + hostPort(s.addrs.apiServer(index), apiServerPort),
		Kubeconfig:       filepath.Join(s.Dir, name, "kubeconfig"),
		VeleroNamespace:  VeleroNamespace,
		RegistryHost:     hostPort(s.nodeAddrs.registryIP(index), registryPort),
		RegistryFromHost: hostPort(s.addrs.registry(index), registryPort),
		NodeName:         name + "-node",
		NetNS:            netnsName(fmt.Sprintf("%d%d-%s", s.addrs.a, s.addrs.b, name)),
		PluginDir:        filepath.Join(s.Dir, name, "velero", "plugins"),
		stack:            s,
		index:            index,
	}
}

// Stack is the stack the cluster belongs to.
func (c *Cluster) Stack() *Stack { return c.stack }

// Other is the other cluster of the pair.
func (c *Cluster) Other() *Cluster {
	if c.index == 0 {
		return c.stack.Target
	}
	return c.stack.Source
}

// RelayedAddresses are the host addresses reachable from inside NetNS: both API servers, S3
// and both registries.
func (c *Cluster) RelayedAddresses() []string {
	a := c.stack.addrs
	return []string{
		hostPort(a.apiServer(0), apiServerPort), hostPort(a.apiServer(1), apiServerPort),
		hostPort(a.s3(), s3Port),
		hostPort(a.registry(0), registryPort), hostPort(a.registry(1), registryPort),
	}
}

func (c *Cluster) start(ctx context.Context, plugins []string) error {
	s := c.stack
	for _, d := range []string{"pki", "registry", "velero/plugins", "velero/tmp", "kcm"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"registry", c.startRegistry},
		{"kube-apiserver", c.startAPIServer},
		{"clients", c.makeClients},
		{"CRDs", c.installCRDs},
		{"kube-controller-manager", c.startControllerManager},
		{"storage classes", c.createStorageClasses},
		{"images", c.pushImages},
		{"node", c.startNode},
		{"kube-scheduler", c.startScheduler},
		{"LoadBalancer stand-in", c.startLoadBalancer},
		{"Velero objects", c.createVeleroObjects},
		{"Velero", func(ctx context.Context) error { return c.startVelero(ctx, plugins) }},
	}
	for _, st := range steps {
		t := time.Now()
		if err := st.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		s.logf("stack: %s: %s ready in %s", c.Name, st.name, time.Since(t).Round(10*time.Millisecond))
	}
	return nil
}

// makeClients writes the admin kubeconfig and builds the clients.
func (c *Cluster) makeClients(context.Context) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.ca.pem}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.token}
	kc.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = c.Name
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return err
	}
	kc.Clusters[c.Name].Server = "https://" + hostPort(c.NodeIP(), apiServerPort)
	c.PodKubeconfig = filepath.Join(c.Dir, "pod-kubeconfig")
	if err := clientcmd.WriteToFile(*kc, c.PodKubeconfig); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c.Config = cfg
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, velerov1.AddToScheme, velerov2alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	c.Client, err = crclient.New(cfg, crclient.Options{Scheme: scheme})
	return err
}

// stop stops what the cluster runs in-process and removes the host-path volumes its
// provisioner made (they live outside Dir, under /tmp/hostpath_pv).
func (c *Cluster) stop(ctx context.Context) error {
	var errs []error
	if c.velero != nil {
		errs = append(errs, c.velero.Stop(15*time.Second))
	}
	if c.lb != nil {
		c.lb.stop()
	}
	errs = append(errs, c.stopNode())
	if c.Kube != nil && c.apiServer != nil {
		if exited, _ := c.apiServer.Exited(); !exited {
			errs = append(errs, c.removeHostPathVolumes(ctx))
		}
	}
	if c.relay != nil {
		c.relay.Close()
	}
	if c.registryRelay != nil {
		c.registryRelay.Close()
	}
	return errors.Join(errs...)
}

func (c *Cluster) removeHostPathVolumes(ctx context.Context) error {
	pvs, err := c.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing PVs to remove their host-path folders: %w", err)
	}
	for _, pv := range pvs.Items {
		if hp := pv.Spec.HostPath; hp != nil && strings.HasPrefix(hp.Path, hostPathProvisionerRoot+"/") {
			_ = os.RemoveAll(hp.Path)
		}
	}
	return nil
}

func (c *Cluster) removeNetNS() error {
	return delNetNS(c.NetNS)
}
