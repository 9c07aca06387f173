// Package stack runs ferry's local two-cluster test stack: real programs on loopback
// (127.0.0.0/8), started and stopped by this package, no cloud cluster, no Docker.
//
//   - etcd (Debian's etcd-server), one per stack, a key prefix per cluster;
//   - per cluster ("source" and "target"): kube-apiserver, kube-controller-manager and
//     kube-scheduler (built from the Go module proxy by hack/build-tools.sh), a kubeconfig,
//     StorageClasses provisioned by the controller manager's host-path provisioner, a
//     docker-registry standing for the internal registry, Velero (server out of cluster, CRDs,
//     BackupStorageLocation, velero-plugin-for-aws and ferry's plugins) in its own network
//     namespace, and a real node (kubelet, containerd and runc, CNI bridge networking,
//     kube-proxy) in network namespaces on addresses of 198.18.0.0/15 (see node.go, nodenet.go);
//   - the stack's images (package images: ferry's, the test app's, pause) in both registries;
//   - versitygw, an S3 server over a folder, whose bucket both Velero servers share;
//   - with Options.OpenShift: the OpenShift APIs ferry touches, as CRDs.
//
// Everything a component writes lives under Stack.Dir, each process's output in
// Stack.Dir/logs/<name>.log; failures carry the relevant log tail.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/test/images"
)

// Options shape a stack. The zero value is a plain-Kubernetes pair with ferry's plugins from
// FerryBinDir(), in a temporary directory.
type Options struct {
	// Dir holds all state. "" creates a temporary directory that Stop removes; a given Dir is
	// kept (its contents are replaced on start).
	Dir string
	// OpenShift installs the OpenShift APIs ferry touches (Route, SCC, ImageStream, …) as CRDs
	// in both clusters; otherwise the pair is plain Kubernetes.
	OpenShift bool
	// Plugins are the plugin binaries copied into each Velero's plugin folder next to
	// velero-plugin-for-aws. nil means ferry's: FerryBinDir()/ferry-plugins. An empty non-nil
	// slice runs Velero without ferry.
	Plugins []string
	// VeleroArgs are extra `velero server` flags (e.g. --log-level=debug).
	VeleroArgs []string
	// ToolsDir holds the third-party programs; "" means ToolsDir().
	ToolsDir string
	// FerryBinDir holds ferry's binaries; it is put first on transfer pods' PATH. "" means
	// FerryBinDir().
	FerryBinDir string
	// VeleroVersion runs another Velero than the default (v1.18.3) on both clusters, server and
	// CLI, with its own CRDs: "v1.14.0", the oldest ferry is tested with (hack/build-tools.sh
	// builds it as velero-v1.14.0).
	VeleroVersion string
	// Name gives a pool's tests a stack of their own (Pool.Get keys stacks by all options): tests
	// that change ferry-config run on one beside the shared stack, in parallel with its tests.
	Name string
	// Logf receives progress lines while the stack starts and stops (nil: silent).
	Logf func(format string, args ...any)
}

// Stack is a running two-cluster stack.
type Stack struct {
	// Dir is the stack's work directory.
	Dir string
	// Source and Target are the two clusters.
	Source, Target *Cluster
	// S3 is the object store both Velero servers share.
	S3 S3
	// OpenShift reports whether the OpenShift APIs are installed.
	OpenShift bool
	// FerryBinDir is where ferry's binaries were taken from.
	FerryBinDir string
	// Tools is the directory of the third-party programs (kubectl, velero, …).
	Tools string

	opts    Options
	tools   tools
	addrs   addresses
	tempDir bool
	logDir  string
	logf    func(format string, args ...any)
	etcd    *Process
	s3      *Process

	// real nodes
	nodeAddrs nodeAddresses
	nodeNet   *nodeNetwork
	egress    *egressProxy
	images    map[string]images.Built

	mu    sync.Mutex
	procs []*Process     // every process, in start order
	cuts  []func() error // CutConnections' heals

	crdOnce sync.Once
	crdYAML []byte
	crdErr  error

	ferryOnce sync.Once
	ferry     ferryIdentities
	ferryErr  error

	// datamover is EnsureSidecar's state: deploy/datamover applied, and the Lease holder Kill
	// killed (a new one must take over).
	datamover struct {
		sync.Mutex
		installed bool
		killed    string
	}
}

// S3 is the stack's S3 server.
type S3 struct {
	// Endpoint is the server URL, e.g. http://127.40.8.3:7070.
	Endpoint string
	// Bucket is the bucket both Velero servers use; BucketDir is its folder on disk.
	Bucket, BucketDir string
	// Region is the only region versitygw accepts.
	Region               string
	AccessKey, SecretKey string
}

// Start brings a stack up. On error everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if err := checkRoot(); err != nil {
		return nil, err
	}
	s = &Stack{opts: opts, OpenShift: opts.OpenShift, logf: opts.Logf}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	s.Tools = opts.ToolsDir
	if s.Tools == "" {
		s.Tools = ToolsDir()
	}
	if s.tools, err = findTools(s.Tools, opts.VeleroVersion); err != nil {
		return nil, err
	}
	s.FerryBinDir = opts.FerryBinDir
	if s.FerryBinDir == "" {
		if s.FerryBinDir, err = FerryBinDir(); err != nil {
			return nil, err
		}
	}
	plugins, err := s.pluginPaths(opts.Plugins)
	if err != nil {
		return nil, err
	}
	if err := s.makeDir(opts.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
			s = nil
		}
	}()
	RemoveOrphans()
	if s.addrs, err = pickAddresses(); err != nil {
		return s, err
	}
	start := time.Now()
	s.logf("stack: starting in %s on 127.%d.%d.0/24", s.Dir, s.addrs.a, s.addrs.b)

	if err := s.setupRealNodes(ctx); err != nil {
		return s, err
	}
	s.Source = newCluster(s, 0, "source")
	s.Target = newCluster(s, 1, "target")
	if err := s.startEtcd(ctx); err != nil {
		return s, err
	}
	if err := s.startS3(ctx); err != nil {
		return s, err
	}
	// The clusters are independent up to here: bring them up side by side.
	if err := s.eachCluster(func(c *Cluster) error { return c.start(ctx, plugins) }); err != nil {
		return s, err
	}
	s.logf("stack: up in %s", time.Since(start).Round(100*time.Millisecond))
	return s, nil
}

// Clusters returns source and target.
func (s *Stack) Clusters() []*Cluster { return []*Cluster{s.Source, s.Target} }

// eachCluster runs f on both clusters concurrently and joins their errors.
func (s *Stack) eachCluster(f func(*Cluster) error) error {
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range s.Clusters() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(c); err != nil {
				errs[i] = fmt.Errorf("%s cluster: %w", c.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Stack) makeDir(dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "ferry-stack-")
		if err != nil {
			return err
		}
		s.Dir, s.tempDir = d, true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(abs); err != nil {
			return fmt.Errorf("clearing stack dir %s: %w", abs, err)
		}
		s.Dir = abs
	}
	s.logDir = filepath.Join(s.Dir, "logs")
	return os.MkdirAll(s.logDir, 0o755)
}

// pluginPaths resolves the plugin binaries Velero gets besides the AWS object store.
func (s *Stack) pluginPaths(plugins []string) ([]string, error) {
	if plugins == nil {
		plugins = []string{filepath.Join(s.FerryBinDir, FerryPluginsBin)}
	}
	for _, p := range plugins {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("Velero plugin binary %s: %w (ferry's binaries come from `make build`)", p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("Velero plugin binary %s is not an executable file", p)
		}
	}
	return plugins, nil
}

// StartProcess starts an extra supervised host process (e.g. ferry's data-mover sidecar); it
// is stopped with the stack and its log tail is part of the stack's diagnostics.
func (s *Stack) StartProcess(spec ProcessSpec) (*Process, error) {
	p, err := startProcess(s.logDir, s.Dir, spec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// Pids are the process ids of the programs the stack started (API servers, Velero, …): Velero's
// children are its plugins, e.g. for a test that reads their memory. Pods' processes are the
// nodes' (see PodPids).
func (s *Stack) Pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.procs {
		out = append(out, p.Pid())
	}
	for _, c := range s.Clusters() {
		if c != nil && c.velero != nil {
			out = append(out, c.velero.Pid())
		}
	}
	return out
}

// Problems lists what is broken in the stack: processes that exited without being asked to,
// and the LoadBalancer stand-ins' failures (which would otherwise only show as Services without
// an address).
func (s *Stack) Problems() []string {
	s.mu.Lock()
	var out []string
	for _, p := range s.procs {
		if msg := p.unexpectedExit(); msg != "" {
			out = append(out, msg)
		}
	}
	s.mu.Unlock()
	for _, c := range s.Clusters() {
		if c != nil && c.lb != nil {
			for _, e := range c.lb.Errors() {
				out = append(out, fmt.Sprintf("%s cluster: %s", c.Name, e))
			}
		}
	}
	return out
}

// LogFiles lists every log file of the stack, sorted: its processes' and every container's.
func (s *Stack) LogFiles() []string {
	files, _ := filepath.Glob(filepath.Join(s.logDir, "*.log"))
	// kubelet's podLogsDir/<namespace>_<pod>_<uid>/<container>/<restart>.log
	if s.nodeNet != nil {
		containers, _ := filepath.Glob(filepath.Join(s.nodeAddrs.runtimeDir(), "*", "pod-logs", "*", "*", "*.log"))
		files = append(files, containers...)
	}
	sort.Strings(files)
	return files
}

// WriteDiagnostics writes what went wrong (unexpected exits) and the last lines of every log.
func (s *Stack) WriteDiagnostics(w io.Writer, lines int) { s.writeDiagnostics(w, lines, time.Time{}) }

// writeDiagnostics is WriteDiagnostics for the logs written to since a time (all if zero).
func (s *Stack) writeDiagnostics(w io.Writer, lines int, since time.Time) {
	for _, p := range s.Problems() {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	for _, f := range s.LogFiles() {
		if fi, err := os.Stat(f); err != nil || fi.ModTime().Before(since) {
			continue
		}
		fmt.Fprintf(w, "----- %s (last %d lines) -----\n%s\n", f, lines, tailFile(f, lines))
	}
}

// Stop stops every process (Velero first, etcd last), removes the network namespaces and the
// host-path volumes the clusters provisioned, and removes Dir if Start created it.
func (s *Stack) Stop() error {
	errs := []error{s.healCuts()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range s.Clusters() {
		if c != nil {
			errs = append(errs, c.stop(ctx))
		}
	}
	s.mu.Lock()
	procs := append([]*Process(nil), s.procs...)
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range s.Clusters() {
		if c != nil {
			errs = append(errs, c.removeNetNS())
		}
	}
	errs = append(errs, s.removeRealNodes())
	if s.tempDir && s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	s.logf("stack: stopped")
	return errors.Join(errs...)
}

// String summarises where things are, for logs.
func (s *Stack) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stack dir: %s (logs in %s)\n", s.Dir, s.logDir)
	fmt.Fprintf(&b, "S3: %s bucket %s (folder %s)\n", s.S3.Endpoint, s.S3.Bucket, s.S3.BucketDir)
	for _, c := range s.Clusters() {
		fmt.Fprintf(&b, "%s: API %s, kubeconfig %s, registry %s, Velero netns %s\n", c.Name, c.Server, c.Kubeconfig, c.RegistryHost, c.NetNS)
	}
	return b.String()
}

// Instructions tells a person how to use the running stack (what `make stack-up` prints).
func (s *Stack) Instructions() string {
	var b strings.Builder
	flavour := "plain Kubernetes"
	if s.OpenShift {
		flavour = "with the OpenShift APIs as CRDs"
	}
	fmt.Fprintf(&b, "The local two-cluster stack is up (%s).\n\n", flavour)
	for _, c := range s.Clusters() {
		fmt.Fprintf(&b, "%-6s kubeconfig %s\n       API server %s, registry %s (HTTP), Velero log %s\n",
			c.Name, c.Kubeconfig, c.Server, c.RegistryHost, c.VeleroLog())
	}
	for _, c := range s.Clusters() {
		fmt.Fprintf(&b, "%-6s node %s (%s, netns %s), pods %s, Services %s\n       kubeconfig for pods of either cluster %s\n       app image %s\n",
			c.Name, c.NodeName, c.NodeIP(), c.NodeNetNS(), c.PodCIDR(), c.ServiceCIDR(), c.PodKubeconfig, c.Image(images.AppName))
	}
	fmt.Fprintf(&b, "S3     %s, bucket %q shared by both Velero servers (folder %s)\n", s.S3.Endpoint, s.S3.Bucket, s.S3.BucketDir)
	fmt.Fprintf(&b, "logs   %s\n\n", s.logDir)
	fmt.Fprintf(&b, "Try:\n")
	fmt.Fprintf(&b, "  export PATH=%s:$PATH   # kubectl and velero of the stack\n", s.Tools)
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s get nodes,storageclasses\n", s.Source.Kubeconfig)
	fmt.Fprintf(&b, "  kubectl --kubeconfig %s create namespace demo\n", s.Source.Kubeconfig)
	fmt.Fprintf(&b, "  velero --kubeconfig %s -n velero backup create b1 --include-namespaces demo --wait\n", s.Source.Kubeconfig)
	fmt.Fprintf(&b, "  velero --kubeconfig %s -n velero backup get        # synced through the shared bucket\n", s.Target.Kubeconfig)
	fmt.Fprintf(&b, "  velero --kubeconfig %s -n velero restore create --from-backup b1 --wait\n", s.Target.Kubeconfig)
	fmt.Fprintf(&b, "  make stack-down\n")
	return b.String()
}
