package stack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Velero's controller manager always binds its metrics listener on :8080, so two Velero servers
// cannot share a network namespace. Each cluster's Velero gets its own (named, so nsenter and
// ip can find it), with loopback up and a relay that makes the host's services it needs
// reachable at the very same 127.x:port inside.

const netnsDir = "/run/netns"

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// netnsName is "ferry-<pid>-<suffix>": the pid lets a later stack remove namespaces whose owner
// died without cleaning up.
func netnsName(suffix string) string { return fmt.Sprintf("ferry-%d-%s", os.Getpid(), suffix) }

func addNetNS(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = delNetNS(name)
		return fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func delNetNS(name string) error {
	if _, err := os.Stat(netnsPath(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RemoveOrphans cleans up after stacks whose process no longer exists (a stack whose process
// was killed cannot clean up after itself): the processes, mounts, cgroups and runtime folders
// of their real nodes (see nodeclean.go), then their network namespaces.
func RemoveOrphans() {
	removeOrphanNodes()
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "ferry-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = delNetNS(e.Name())
		}
	}
}

// relay listens on each address inside a network namespace and forwards every connection to the
// same address on the host.
type relay struct {
	listeners []net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool
}

// startRelay opens the listeners inside the namespace ns, each forwarding to the same address
// on the host.
func startRelay(ns string, addrs []string) (*relay, error) {
	routes := make([]relayRoute, len(addrs))
	for i, a := range addrs {
		routes[i] = relayRoute{listen: a, target: a}
	}
	return startRelayRoutes(ns, routes)
}

// relayRoute is one listener of a relay: an address inside the namespace and the host address
// its connections go to.
type relayRoute struct{ listen, target string }

// startRelayRoutes opens the listeners inside the namespace ns. The sockets are created on an
// OS thread switched into ns (a socket stays in the namespace it was made in); accepting and
// dialing happen on ordinary host threads.
func startRelayRoutes(ns string, routes []relayRoute) (*relay, error) {
	var ls []net.Listener
	err := inNetNS(ns, func() error {
		for _, rt := range routes {
			l, err := net.Listen("tcp", rt.listen)
			if err != nil {
				for _, l := range ls {
					l.Close()
				}
				return fmt.Errorf("relay listen %s in netns %s: %w", rt.listen, ns, err)
			}
			ls = append(ls, l)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &relay{listeners: ls, conns: map[net.Conn]struct{}{}}
	for i, l := range ls {
		r.wg.Add(1)
		go r.serve(l, routes[i].target)
	}
	return r, nil
}

func (r *relay) serve(l net.Listener, target string) {
	defer r.wg.Done()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go r.forward(in, target)
	}
}

func (r *relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		if r.closed {
			return false
		}
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *relay) forward(in net.Conn, target string) {
	defer in.Close()
	out, err := net.Dial("tcp", target)
	if err != nil {
		return // the client sees its connection closed, as with a refused connection
	}
	defer out.Close()
	if !r.track(in, true) || !r.track(out, true) {
		return
	}
	defer r.track(in, false)
	defer r.track(out, false)
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // pass the half-close on (HTTP/1.0-style clients rely on it)
		}
	}
	wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
}

// Close stops listening and cuts open connections.
func (r *relay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	for _, l := range r.listeners {
		l.Close()
	}
	r.wg.Wait()
}
