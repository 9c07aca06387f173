// Package registrytest runs real registries for tests and benchmarks: Debian's docker-registry
// (the distribution project's server) on loopback, with plain HTTP or TLS from a CA of its own,
// htpasswd authentication, or read-only storage. Test images come from go-containerregistry's
// random images. Nothing here is a fake: a missing docker-registry is an error that says how to
// install it.
package registrytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry program (Debian package docker-registry).
const Binary = "docker-registry"

// Options shape a registry.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 from a fresh CA (Registry.CAPEM).
	TLS bool
	// Users turns on htpasswd authentication with these user → password pairs.
	Users map[string]string
	// ReadOnly refuses every write (pushes fail), as distribution's maintenance mode does.
	ReadOnly bool
	// Dir holds storage, config and log; "" makes a temporary one that Stop removes.
	Dir string
}

// Registry is a running registry.
type Registry struct {
	// Host is host:port on loopback.
	Host string
	// CAPEM is the CA that signed the server certificate (TLS only).
	CAPEM []byte
	// Dir is the registry's folder; Storage its data.
	Dir, Storage string

	tempDir bool
	users   map[string]string
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
	stopped sync.Once
}

// At is a registry someone else runs (plain HTTP, no authentication), e.g. the local stack's, so
// tests can push to and read from it with the same helpers. Stop and Close do nothing.
func At(host string) *Registry { return &Registry{Host: host} }

// Start runs a registry and waits until it answers.
func Start(opts Options) (*Registry, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("%s is not installed (Debian package docker-registry; `make deps` or hack/install-deps.sh installs it): %w", Binary, err)
	}
	r := &Registry{Dir: opts.Dir, users: opts.Users}
	if r.Dir == "" {
		if r.Dir, err = os.MkdirTemp("", "ferry-registry-"); err != nil {
			return nil, err
		}
		r.tempDir = true
	}
	r.Storage = filepath.Join(r.Dir, "data")
	var lastErr error
	// A port picked free can be taken by someone else before the registry binds it: try again.
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = r.start(bin, opts); lastErr == nil {
			return r, nil
		}
		r.Stop()
	}
	if r.tempDir {
		_ = os.RemoveAll(r.Dir)
	}
	return nil, lastErr
}

func (r *Registry) start(bin string, opts Options) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	r.Host = fmt.Sprintf("127.0.0.1:%d", port)
	return r.launch(bin, opts)
}

// launch writes the config for r.Host and runs the registry until it answers.
func (r *Registry) launch(bin string, opts Options) error {
	config, err := r.writeConfig(opts)
	if err != nil {
		return err
	}
	r.log = &lockedBuffer{}
	r.done = make(chan struct{})
	r.stopped = sync.Once{}
	r.cmd = exec.Command(bin, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	// The registry dies with the test binary, even when it is killed.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	return r.waitReady(30 * time.Second)
}

func (r *Registry) writeConfig(opts Options) (string, error) {
	if err := os.MkdirAll(r.Storage, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", r.Storage)
	if opts.ReadOnly {
		fmt.Fprintf(&b, "  maintenance:\n    readonly:\n      enabled: true\n")
	}
	fmt.Fprintf(&b, "http:\n  addr: %s\n", r.Host)
	if opts.TLS {
		certFile, keyFile := filepath.Join(r.Dir, "tls.crt"), filepath.Join(r.Dir, "tls.key")
		if r.CAPEM == nil { // a restart keeps its certificate
			ca, cert, key, err := serverCertificate()
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(certFile, cert, 0o600); err != nil {
				return "", err
			}
			if err := os.WriteFile(keyFile, key, 0o600); err != nil {
				return "", err
			}
			r.CAPEM = ca
		}
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	if len(opts.Users) > 0 {
		var lines []string
		for user, pass := range opts.Users {
			hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				return "", err
			}
			lines = append(lines, user+":"+string(hash))
		}
		htpasswd := filepath.Join(r.Dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: ferry-test\n    path: %s\n", htpasswd)
	}
	path := filepath.Join(r.Dir, "config.yml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// waitReady polls /v2/ until the registry answers (200, or 401 with auth on).
func (r *Registry) waitReady(timeout time.Duration) error {
	client := r.HTTPClient()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return fmt.Errorf("%s exited while starting on %s; its output:\n%s", Binary, r.Host, r.log.String())
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s on %s did not answer within %s; its output:\n%s", Binary, r.Host, timeout, r.log.String())
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.CAPEM != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// RootCAs is a pool holding only the registry's CA (nil without TLS).
func (r *Registry) RootCAs() *x509.CertPool {
	if r.CAPEM == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CAPEM)
	return pool
}

// HTTPClient trusts the registry's CA.
func (r *Registry) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: r.Transport()}
}

// Transport is an http.RoundTripper trusting the registry's CA.
func (r *Registry) Transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: r.RootCAs(), MinVersion: tls.VersionTLS12}
	return t
}

// Log is what the registry printed so far.
func (r *Registry) Log() string {
	if r.log == nil {
		return ""
	}
	return r.log.String()
}

// Stop kills the registry and removes a temporary Dir.
func (r *Registry) Stop() {
	r.stopped.Do(func() {
		if r.cmd != nil && r.cmd.Process != nil {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
}

// Close stops the registry and removes its temporary folder.
func (r *Registry) Close() error {
	r.Stop()
	if r.tempDir {
		return os.RemoveAll(r.Dir)
	}
	return nil
}

// Reset stops the registry, empties its storage and starts it again on the same address (with
// the same CA), for a "cold" target.
func (r *Registry) Reset(opts Options) error {
	r.Stop()
	if err := os.RemoveAll(r.Storage); err != nil {
		return err
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return err
	}
	return r.launch(bin, opts)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects a process's output safely across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
