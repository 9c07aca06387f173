package stack

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Every stack's host processes live on their own random block of loopback addresses,
// 127.A.B.0/24, so stacks of parallel test binaries (and other programs on 127.0.0.1) never
// compete for ports: etcd, S3, and per cluster the API server, controller manager, registry and
// scheduler. Nodes, pods and Services are on addresses of 198.18.0.0/15 (see nodeAddresses).
type addresses struct {
	a, b byte
}

// Fixed ports: the address block alone keeps stacks apart.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
	s3Port         = 7070
	apiServerPort  = 6443
	kcmPort        = 10257
	registryPort   = 5000
)

func (a addresses) ip(c, d byte) string { return fmt.Sprintf("127.%d.%d.%d", a.a, a.b+c, d) }

func (a addresses) etcd() string { return a.ip(0, 2) }
func (a addresses) s3() string   { return a.ip(0, 3) }

// cluster i (0 source, 1 target) infrastructure addresses.
func (a addresses) apiServer(i int) string { return a.ip(0, byte(10+10*i)) }
func (a addresses) kcm(i int) string       { return a.ip(0, byte(11+10*i)) }
func (a addresses) registry(i int) string  { return a.ip(0, byte(12+10*i)) }
func (a addresses) scheduler(i int) string { return a.ip(0, byte(14+10*i)) }

// listenAddrs are all fixed listeners of a stack, for the "is this block free?" check.
func (a addresses) listenAddrs() []string {
	l := []string{
		hostPort(a.etcd(), etcdClientPort), hostPort(a.etcd(), etcdPeerPort), hostPort(a.s3(), s3Port),
	}
	for i := range 2 {
		l = append(l, hostPort(a.apiServer(i), apiServerPort), hostPort(a.kcm(i), kcmPort),
			hostPort(a.registry(i), registryPort),
			hostPort(a.scheduler(i), schedulerPort))
	}
	return l
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// pickAddresses chooses a random block whose listeners are all free. A avoids 127.0.x and
// 127.1.x, where most local programs live.
func pickAddresses() (addresses, error) {
	for range 50 {
		a := addresses{a: byte(16 + rand.IntN(239)), b: byte(4 * rand.IntN(63))}
		if a.free() {
			return a, nil
		}
	}
	return addresses{}, fmt.Errorf("no free loopback address block found after 50 tries")
}

func (a addresses) free() bool {
	for _, addr := range a.listenAddrs() {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
