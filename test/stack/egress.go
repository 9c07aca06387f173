package stack

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

// egressProxy is the API server's way to the real nodes (kubectl logs/exec, port-forward): an
// HTTP CONNECT proxy on a unix socket (kube-apiserver's EgressSelectorConfiguration, network
// "cluster"), which dials inside the stack's net namespace. The node addresses are routed only
// there, so the host's routing table stays untouched.
type egressProxy struct {
	ln     net.Listener
	ns     string
	socket string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func startEgressProxy(socket, ns string) (*egressProxy, error) {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	e := &egressProxy{ln: ln, ns: ns, socket: socket, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	return e, nil
}

func (e *egressProxy) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		go e.handle(c)
	}
}

func (e *egressProxy) track(c net.Conn, add bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if add {
		if e.closed {
			return false
		}
		e.conns[c] = struct{}{}
	} else {
		delete(e.conns, c)
	}
	return true
}

func (e *egressProxy) handle(in net.Conn) {
	defer in.Close()
	if !e.track(in, true) {
		return
	}
	defer e.track(in, false)
	br := bufio.NewReader(in)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		fmt.Fprintf(in, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	out, err := dialInNetNS(e.ns, "tcp", req.Host)
	if err != nil {
		fmt.Fprintf(in, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n%v\n", err)
		return
	}
	defer out.Close()
	if !e.track(out, true) {
		return
	}
	defer e.track(out, false)
	if _, err := fmt.Fprintf(in, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(out, br) // br may hold bytes read past the request
		if tc, ok := out.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(in, out)
		if uc, ok := in.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
	}()
	wg.Wait()
}

// egressConfig is the API server's EgressSelectorConfiguration naming this proxy.
func (e *egressProxy) egressConfig() string {
	return fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, e.socket)
}

func (e *egressProxy) Close() {
	e.mu.Lock()
	e.closed = true
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.ln.Close()
	e.wg.Wait()
	_ = os.Remove(e.socket)
}
