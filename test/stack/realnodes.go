package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-dev/ferry/test/images"
)

// setupRealNodes prepares what both clusters' nodes share: an address block of 198.18.0.0/15,
// the link network (net namespace, bridge, a namespace per node), the API servers' egress proxy
// into it, and the stack's images.
func (s *Stack) setupRealNodes(ctx context.Context) error {
	t := time.Now()
	a, err := claimNodeBlock()
	if err != nil {
		return err
	}
	s.nodeAddrs = a
	if err := saveHostSysctls(); err != nil {
		return err
	}
	if err := raiseHostSysctls(); err != nil {
		return err
	}
	s.nodeNet = newNodeNetwork(a, [2]string{"source", "target"})
	if err := s.nodeNet.setup(); err != nil {
		return fmt.Errorf("node network: %w", err)
	}
	if s.egress, err = startEgressProxy(filepath.Join(a.runtimeDir(), "egress.sock"), s.nodeNet.netNS); err != nil {
		return fmt.Errorf("egress proxy: %w", err)
	}
	s.logf("stack: node network %s ready in %s", a.ip(0, 0)+"/21", time.Since(t).Round(10*time.Millisecond))
	root, err := RepoRoot()
	if err != nil {
		return fmt.Errorf("building the stack's images: %w", err)
	}
	built, err := images.Build(ctx, images.Options{
		CacheDir: ImageCacheDir(), FerryBinDir: s.FerryBinDir, RepoRoot: root, Logf: s.logf,
	}, images.All...)
	if err != nil {
		return err
	}
	s.images = map[string]images.Built{}
	for _, b := range built {
		s.images[b.Name] = b
	}
	return nil
}

// removeRealNodes removes the link network, the egress proxy, the runtime folder and the
// address block's claim (after the clusters stopped their nodes).
func (s *Stack) removeRealNodes() error {
	if s.nodeNet == nil {
		return nil
	}
	var errs []error
	if s.egress != nil {
		s.egress.Close()
	}
	errs = append(errs, s.nodeNet.remove())
	dir := s.nodeAddrs.runtimeDir()
	errs = append(errs, unmountUnder(dir))
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.nodeAddrs.release(), restoreHostSysctls())
	return errors.Join(errs...)
}

// Image is the reference of one of the stack's images (images.PauseName, AppName,
// DatamoverName, PluginsName) in the cluster's registry.
func (c *Cluster) Image(name string) string {
	b, ok := c.stack.images[name]
	if !ok {
		return ""
	}
	return b.Ref(c.RegistryHost)
}

// PushImage pushes one of the stack's images to the cluster's registry as repoTag (repo:tag), as
// a user pushes an application's image, and returns its digest; pods pull it as
// RegistryHost/repoTag.
func (c *Cluster) PushImage(ctx context.Context, name, repoTag string) (string, error) {
	b, ok := c.stack.images[name]
	if !ok {
		return "", fmt.Errorf("the stack has no image %q", name)
	}
	return images.PushAs(ctx, b, c.RegistryFromHost+"/"+repoTag)
}

// pushImages pushes the stack's images to the cluster's registry (blobs it has are skipped).
func (c *Cluster) pushImages(ctx context.Context) error {
	for _, name := range []string{images.PauseName, images.AppName, images.DatamoverName, images.PluginsName} {
		if _, err := images.Push(ctx, c.stack.images[name], c.RegistryFromHost); err != nil {
			return err
		}
	}
	return nil
}

// NodeNetNS is the network namespace of the cluster's node.
func (c *Cluster) NodeNetNS() string { return c.stack.nodeNet.nodeNS[c.index] }

// NodeIP is the address of the cluster's node: its InternalIP, where NodePorts and the API
// server relay for pods listen.
func (c *Cluster) NodeIP() string { return c.stack.nodeAddrs.nodeIP(c.index) }

// PodCIDR and ServiceCIDR are the cluster's pod and Service ranges.
func (c *Cluster) PodCIDR() string     { return c.stack.nodeAddrs.podCIDR(c.index) }
func (c *Cluster) ServiceCIDR() string { return c.serviceCIDR() }

// serviceCIDR is the Service range the API server hands ClusterIPs from, routed to the node.
func (c *Cluster) serviceCIDR() string { return c.stack.nodeAddrs.serviceCIDR(c.index) }

func (c *Cluster) kubernetesServiceIP() string {
	return c.stack.nodeAddrs.kubernetesService(c.index)
}
