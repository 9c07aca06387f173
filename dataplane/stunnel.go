package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultPort is the transfer server's TLS port.
const DefaultPort = 8443

// findStunnel finds stunnel: Debian installs it as stunnel4 (with a stunnel symlink), other
// distributions as stunnel.
func findStunnel() (string, error) { return lookPath("stunnel", "stunnel4", "stunnel") }

// findRsync finds rsync.
func findRsync() (string, error) { return lookPath("rsync", "rsync") }

// TLS settings shared by both ends. TLS 1.3 with AES-GCM is preferred (AES-NI makes it the
// cheapest cipher on the CPUs clusters run on); TLS 1.2 is the floor, with ECDHE+AES-GCM only.
const (
	tlsMinVersion   = "TLSv1.2"
	tls13Suites     = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"
	tls12Ciphers    = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
	keepaliveIdle   = 60 // seconds before TCP keepalive probes start: a dead peer is noticed in ~2 min
	keepaliveIntvl  = 10
	keepaliveProbes = 6
)

// stunnelServerConfig is the TLS front of `serve`.
type stunnelServerConfig struct {
	Listen     string // host:port
	CertDir    string // ca.crt, tls.crt, tls.key
	Rsync      string // rsync binary, started per connection
	RsyncdConf string
}

func (c stunnelServerConfig) render() string {
	var b strings.Builder
	b.WriteString("; ferry transfer server (generated)\n")
	// In the foreground stunnel logs to stderr, which `serve` reads; no pid file, no syslog.
	b.WriteString("foreground = yes\npid =\nsyslog = no\n")
	// notice: one line per connection and per refused certificate; never key material.
	b.WriteString("debug = notice\n")
	b.WriteString("\n[rsync]\n")
	fmt.Fprintf(&b, "accept = %s\n", c.Listen)
	// Each accepted connection gets its own rsync in daemon mode on its stdin/stdout (stunnel
	// connects them to the connection itself): no rsync listening socket at all, not even on
	// loopback, so nothing but stunnel can reach a daemon.
	fmt.Fprintf(&b, "exec = %s\n", c.Rsync)
	fmt.Fprintf(&b, "execArgs = rsync --server --daemon --config=%s .\n", c.RsyncdConf)
	writeTLS(&b, c.CertDir, ClientName)
	// The client must present a certificate, signed by this transfer's CA, for the client name.
	b.WriteString("requireCert = yes\n")
	for _, opt := range socketOptions("l") {
		fmt.Fprintf(&b, "socket = %s\n", opt)
	}
	// Wait briefly for the peer's TLS close_notify (it comes at once on a clean close); a cut
	// link never sends one.
	b.WriteString("TIMEOUTclose = 2\n")
	return b.String()
}

// stunnelClientConfig is the TLS client of one rsync process of `send`. It runs in inetd mode
// (rsync starts it as its remote shell and talks to its stdin/stdout): one TLS connection per
// rsync process, and no local listening port.
type stunnelClientConfig struct {
	Connect string // host:port of the server
	SNI     string // "" sends no SNI
	CertDir string
}

func (c stunnelClientConfig) render() string {
	var b strings.Builder
	b.WriteString("; ferry transfer client (generated; inetd mode, one per rsync process)\n")
	// foreground: in inetd mode this is what sends the log to stderr (rsync's).
	b.WriteString("foreground = yes\npid =\nsyslog = no\n")
	// warning: only failures (refused connection, certificate checks) reach rsync's stderr.
	b.WriteString("debug = warning\n")
	b.WriteString("client = yes\n")
	fmt.Fprintf(&b, "connect = %s\n", c.Connect)
	// OpenShift passthrough Routes pick the backend by SNI. An empty value disables it.
	fmt.Fprintf(&b, "sni = %s\n", c.SNI)
	writeTLS(&b, c.CertDir, ServerName)
	for _, opt := range socketOptions("r") {
		fmt.Fprintf(&b, "socket = %s\n", opt)
	}
	// rsync closes its end only after its remote shell, this client, exited: waiting for that
	// would wait out the timeout at the end of every connection.
	b.WriteString("TIMEOUTconnect = 15\nTIMEOUTclose = 0\n")
	return b.String()
}

// writeTLS writes the certificate settings: own certificate and key, the transfer's CA as the
// only trust anchor, the peer's chain verified and its certificate required to carry peerName.
func writeTLS(b *strings.Builder, dir, peerName string) {
	fmt.Fprintf(b, "cert = %s\n", filepath.Join(dir, CertFile))
	fmt.Fprintf(b, "key = %s\n", filepath.Join(dir, KeyFile))
	fmt.Fprintf(b, "CAfile = %s\n", filepath.Join(dir, CAFile))
	b.WriteString("verifyChain = yes\n")
	// Both leaves are signed by the same CA: the name keeps the client key from posing as the
	// server (and the server's from posing as a client).
	fmt.Fprintf(b, "checkHost = %s\n", peerName)
	fmt.Fprintf(b, "sslVersionMin = %s\n", tlsMinVersion)
	fmt.Fprintf(b, "ciphersuites = %s\n", tls13Suites)
	fmt.Fprintf(b, "ciphers = %s\n", tls12Ciphers)
}

// socketOptions are TCP options for stunnel's network socket (side "l" on the server, "r" on
// the client): keepalives so a silently dropped connection (NAT, load balancer) is detected,
// and no Nagle delay on rsync's small protocol messages.
func socketOptions(side string) []string {
	return []string{
		side + ":SO_KEEPALIVE=1",
		side + ":TCP_KEEPIDLE=" + strconv.Itoa(keepaliveIdle),
		side + ":TCP_KEEPINTVL=" + strconv.Itoa(keepaliveIntvl),
		side + ":TCP_KEEPCNT=" + strconv.Itoa(keepaliveProbes),
		side + ":TCP_NODELAY=1",
	}
}

// stunnelServer is a running stunnel of `serve`.
type stunnelServer struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
	tail *stderrTail
}

// startStunnelServer starts stunnel with conf and returns once it listens on listen, or with
// an error carrying stunnel's last log lines if it exits first (bad certificate, port taken…).
func startStunnelServer(ctx context.Context, stunnel, conf, listen string, log logrus.FieldLogger) (*stunnelServer, error) {
	s := &stunnelServer{done: make(chan struct{}), tail: &stderrTail{max: 6}}
	s.cmd = childCommand(ctx, stunnel, conf)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", stunnel, err)
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		logStunnel(stderr, log.WithField("process", "stunnel"), s.tail)
	}()
	go func() {
		<-logged // Wait must not close the pipe before the last lines are read
		s.err = s.cmd.Wait()
		killGroup(s.cmd)
		close(s.done)
	}()

	port, err := listenPort(listen)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := listensOn(s.cmd.Process.Pid, port); ok {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("stunnel exited before listening on %s (%v): %s", listen, s.err, s.tail)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// logStunnel forwards stunnel's (and its rsync daemons') stderr. stunnel's startup banner and
// its debug lines (which it prints while shutting down after an error) go to debug level and
// stay out of the tail kept for error messages.
func logStunnel(r io.Reader, log logrus.FieldLogger, tail *stderrTail) {
	forEachLine(r, func(line string) {
		if strings.HasPrefix(line, "[ ]") || strings.Contains(line, "LOG5[ui]") || strings.Contains(line, "LOG7[") || strings.Contains(line, "LOG6[") {
			log.Debug(line)
			return
		}
		log.Info(line)
		tail.add(line)
	})
}

// stop ends stunnel and every rsync it started.
func (s *stunnelServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = signalGroup(s.cmd, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(childGrace):
		killGroup(s.cmd)
		<-s.done
	}
}

// stunnelAddr writes host:port the way stunnel reads it: it splits at the last colon and does
// not know brackets, so an IPv6 literal goes bare ("::1:8443").
func stunnelAddr(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return host + ":" + port
}

func listenPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("listen address %q: bad port", addr)
	}
	return port, nil
}

// listensOn reports whether process pid has a TCP socket listening on port: the LISTEN
// entries of /proc/net/tcp{,6} whose socket inode is one of the process's descriptors. (A test
// connection would be logged by stunnel as a failed handshake.)
func listensOn(pid, port int) (bool, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[target] {
			return true, nil
		}
	}
	return false, errors.New("port is held by another process")
}
