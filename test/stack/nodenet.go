package stack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Real nodes live on addresses of 198.18.0.0/15, the block reserved for
// network tests, and only inside network namespaces the stack creates: nothing of it is
// routed on the host. Each stack claims one /21 of it (64 stacks at once), so stacks of
// parallel test binaries stay apart, and lays it out as:
//
//	198.X.Y+0.0/24  the stack's link network: a bridge (.1) in the stack's "net" namespace,
//	                the source node .11, the target node .21 (each a veth into that bridge),
//	                the source's registry .2 and the target's .3 (relays in the net namespace)
//	198.X.Y+1.0/24  source pods        198.X.Y+4.0/24  target pods
//	198.X.Y+2.0/24  source Services    198.X.Y+5.0/24  target Services
//	198.X.Y+3.0/24  source LoadBalancer addresses    198.X.Y+6.0/24  target's
//
// The net namespace routes each cluster's pod, Service and LoadBalancer ranges to that
// cluster's node, so a pod of one cluster reaches the other's pods, NodePorts, ClusterIPs
// and LoadBalancer addresses (kube-proxy on the receiving node does the rest).
type nodeAddresses struct {
	block int // 0…63
}

const nodeBlocks = 64

func (n nodeAddresses) ip(c, d int) string {
	base := n.block * 8 // /24s from 198.18.0.0
	return fmt.Sprintf("198.%d.%d.%d", 18+(base+c)/256, (base+c)%256, d)
}

func (n nodeAddresses) cidr(c int) string { return n.ip(c, 0) + "/24" }

// bridge is the net namespace's address on the link network; nodeIP is node i's; registryIP
// is where cluster i's registry is reached from nodes and pods (a relay in the net namespace).
func (n nodeAddresses) bridge() string          { return n.ip(0, 1) }
func (n nodeAddresses) registryIP(i int) string { return n.ip(0, 2+i) }
func (n nodeAddresses) nodeIP(i int) string     { return n.ip(0, 11+10*i) }
func (n nodeAddresses) linkCIDR() string        { return n.cidr(0) }

// Cluster i's ranges.
func (n nodeAddresses) podCIDR(i int) string           { return n.cidr(1 + 3*i) }
func (n nodeAddresses) podGateway(i int) string        { return n.ip(1+3*i, 1) }
func (n nodeAddresses) serviceCIDR(i int) string       { return n.cidr(2 + 3*i) }
func (n nodeAddresses) kubernetesService(i int) string { return n.ip(2+3*i, 1) }
func (n nodeAddresses) lbCIDR(i int) string            { return n.cidr(3 + 3*i) }

// lbIPs are the LoadBalancer addresses the stand-in hands out for cluster i.
func (n nodeAddresses) lbIPs(i int) []string {
	ips := make([]string, 0, 253)
	for d := 1; d < 254; d++ {
		ips = append(ips, n.ip(3+3*i, d))
	}
	return ips
}

// runtimeRoot holds the node state that must have short paths (unix sockets) or that a later
// stack must find after this one was killed (mounts, the block claim): each stack's folder is
// named <pid>-b<block>, so RemoveOrphans knows whose it is. /run is not a tmpfs on every
// machine, so nothing here assumes it empties on reboot.
const runtimeRoot = "/run/ferry"

func (n nodeAddresses) runtimeDir() string {
	return filepath.Join(runtimeRoot, fmt.Sprintf("%d-b%d", os.Getpid(), n.block))
}

func blockClaim(block int) string { return filepath.Join(runtimeRoot, fmt.Sprintf("block-%d", block)) }

// claimNodeBlock picks a free /21 and claims it with a symlink block-N -> <pid>-bN (creating a
// symlink is atomic; a claim whose process is gone is taken over).
func claimNodeBlock() (nodeAddresses, error) {
	if err := os.MkdirAll(runtimeRoot, 0o755); err != nil {
		return nodeAddresses{}, err
	}
	start := rand.IntN(nodeBlocks)
	for i := range nodeBlocks {
		n := nodeAddresses{block: (start + i) % nodeBlocks}
		claim := blockClaim(n.block)
		err := os.Symlink(filepath.Base(n.runtimeDir()), claim)
		if err == nil {
			return n, os.MkdirAll(n.runtimeDir(), 0o755)
		}
		if !errors.Is(err, os.ErrExist) {
			return nodeAddresses{}, err
		}
		if target, err := os.Readlink(claim); err == nil && !pidAlive(ownerPid(target)) {
			removeRuntimeDir(filepath.Join(runtimeRoot, target))
			_ = os.Remove(claim)
			if os.Symlink(filepath.Base(n.runtimeDir()), claim) == nil {
				return n, os.MkdirAll(n.runtimeDir(), 0o755)
			}
		}
	}
	return nodeAddresses{}, fmt.Errorf("all %d address blocks of 198.18.0.0/15 are claimed by running stacks (%s)", nodeBlocks, runtimeRoot)
}

func (n nodeAddresses) release() error {
	claim := blockClaim(n.block)
	if target, err := os.Readlink(claim); err == nil && target == filepath.Base(n.runtimeDir()) {
		return os.Remove(claim)
	}
	return nil
}

// ownerPid reads the pid from "<pid>-…" (0 if there is none).
func ownerPid(name string) int {
	s, _, _ := strings.Cut(name, "-")
	pid, _ := strconv.Atoi(s)
	return pid
}

func pidAlive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// nodeNetwork is the stack's link network: the net namespace with its bridge and a namespace per
// node, joined by veth pairs.
type nodeNetwork struct {
	addrs nodeAddresses
	// netNS is the namespace of the bridge; nodeNS[i] that of cluster i's node.
	netNS  string
	nodeNS [2]string
}

func newNodeNetwork(a nodeAddresses, clusterNames [2]string) *nodeNetwork {
	nn := &nodeNetwork{addrs: a, netNS: netnsName(fmt.Sprintf("b%d-net", a.block))}
	for i, name := range clusterNames {
		nn.nodeNS[i] = netnsName(fmt.Sprintf("b%d-%s-node", a.block, name))
	}
	return nn
}

// setup creates the namespaces, the bridge, the veths, addresses and routes. Forwarding is on in
// every namespace (each is a router), and bridged traffic passes iptables in the node namespaces,
// as kube-proxy requires.
func (nn *nodeNetwork) setup() error {
	a := nn.addrs
	if err := addNetNS(nn.netNS); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", nn.netNS, "link", "add", "br0", "type", "bridge"},
		{"-n", nn.netNS, "addr", "add", a.bridge() + "/24", "dev", "br0"},
		{"-n", nn.netNS, "addr", "add", a.registryIP(0) + "/32", "dev", "br0"},
		{"-n", nn.netNS, "addr", "add", a.registryIP(1) + "/32", "dev", "br0"},
		{"-n", nn.netNS, "link", "set", "br0", "up"},
	}
	if err := ipSteps(steps); err != nil {
		return err
	}
	if err := writeSysctls(nn.netNS, map[string]string{"net/ipv4/ip_forward": "1"}); err != nil {
		return err
	}
	for i, ns := range nn.nodeNS {
		if err := addNetNS(ns); err != nil {
			return err
		}
		veth := fmt.Sprintf("veth%d", i)
		ip := a.nodeIP(i)
		steps := [][]string{
			{"-n", nn.netNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", nn.netNS, "link", "set", veth, "master", "br0", "up"},
			{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "route", "add", "default", "via", a.bridge()},
			{"-n", nn.netNS, "route", "add", a.podCIDR(i), "via", ip},
			{"-n", nn.netNS, "route", "add", a.serviceCIDR(i), "via", ip},
			{"-n", nn.netNS, "route", "add", a.lbCIDR(i), "via", ip},
		}
		if err := ipSteps(steps); err != nil {
			return err
		}
		if err := writeSysctls(ns, map[string]string{
			"net/ipv4/ip_forward":                 "1",
			"net/bridge/bridge-nf-call-iptables":  "1",
			"net/bridge/bridge-nf-call-ip6tables": "1",
		}); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes the namespaces; the bridge and veths go with them.
func (nn *nodeNetwork) remove() error {
	var errs []error
	for _, ns := range nn.nodeNS {
		errs = append(errs, delNetNS(ns))
	}
	errs = append(errs, delNetNS(nn.netNS))
	return errors.Join(errs...)
}

func ipSteps(steps [][]string) error {
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// writeSysctls sets per-namespace sysctls (paths under /proc/sys) from inside the namespace:
// /proc/sys/net shows the namespace of the thread that opens it.
func writeSysctls(ns string, values map[string]string) error {
	return inNetNS(ns, func() error {
		for k, v := range values {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in netns %s: %w", k, v, ns, err)
			}
		}
		return nil
	})
}

// inNetNS runs f on an OS thread switched into the named network namespace, and switches the
// thread back before it is shared again (if that fails, the thread stays locked and the runtime
// retires it with the goroutine).
func inNetNS(ns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer home.Close()
		target, err := os.Open(netnsPath(ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		defer func() {
			if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		ch <- f()
	}()
	return <-ch
}

// dialInNetNS connects to addr from inside a network namespace (the socket belongs to the
// namespace it was created in; the connection is then used from any thread).
func dialInNetNS(ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(ns, func() error {
		var err error
		c, err = net.Dial(network, addr)
		return err
	})
	return c, err
}
