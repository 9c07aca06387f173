// Package podrunner is the ONE simulated part of ferry's local test stack. Everything else in
// the stack is the real program; this package stands in for kubelet, and only for ferry's own
// transfer pods (label app.kubernetes.io/managed-by=ferry). There are no images and no
// container runtime: it runs the pod's container command line unchanged as a local process.
//
// What it does, as kubelet would:
//   - registers a Node (Ready, InternalIP = its address) and binds matching unscheduled pods to
//     it (a pod whose nodeSelector does not match stays Pending, as with a scheduler);
//   - gives each pod its own 127.x address (status.podIP) from a pool;
//   - runs each container (init containers first, in order) as root in a private mount and PID
//     namespace (`unshare --mount --propagation private --pid --fork`), with a private tmpfs on
//     /mnt and /tmp and the pod's volumes bind-mounted exactly at the container's mountPaths: a
//     PVC as its PV's hostPath folder, Secret and ConfigMap volumes as files, emptyDir and
//     hostPath volumes as folders. PATH starts with the configured folders (ferry's binaries,
//     as the transfer image has them) before the system ones; env, envFrom and the downward API
//     fields pods use are filled in; the command gets only the capabilities its securityContext
//     grants (setpriv), as under a container runtime;
//   - writes pod status back (Pending with podIP, Running, Ready after readiness probes,
//     Succeeded/Failed with exit codes in containerStatuses[].state.terminated), restarting
//     containers as restartPolicy says;
//   - on deletion sends SIGTERM to the container's PID 1, SIGKILL to everything in the pod after
//     the grace period, and removes the pod object;
//   - serves /containerLogs/{ns}/{pod}/{container} on the Node's kubelet endpoint (TLS, client
//     certificate required), so `kubectl logs` and client-go GetLogs work through the API server
//     (follow, previous, tailLines, sinceSeconds, sinceTime, timestamps, limitBytes);
//   - publishes Services of type LoadBalancer carrying the same label: ingress[0].ip is the
//     address of a running pod the Service selects.
//
// Limits, by design: mounts are allowed under /mnt only (a pod mounting elsewhere fails with a
// clear message); all pods share the host network, so a server must listen on its pod address
// (status.podIP through the downward API), not 0.0.0.0; a LoadBalancer's service port must equal
// the container port (there is no NAT); containers run as uid 0 whatever runAsUser says;
// liveness/startup probes, resource limits, exec/attach/port-forward and the termination-message
// file are not implemented.
package podrunner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/ferry-dev/ferry/internal/keys"
)

// Options configure a Runner.
type Options struct {
	// Client talks to the cluster's API server.
	Client kubernetes.Interface
	// NodeName is the Node the runner registers and runs pods for.
	NodeName string
	// NodeIP is the Node's InternalIP; the kubelet endpoint listens on NodeIP:KubeletPort.
	NodeIP      string
	KubeletPort int
	// TLS serves the kubelet endpoint: its certificate, and ClientCAs/ClientAuth to check the
	// API server's client certificate.
	TLS *tls.Config
	// PodIPs are the addresses handed to pods (each must be assignable on loopback).
	PodIPs []string
	// Dir holds one folder per pod (volume files, container logs).
	Dir string
	// PathDirs come first on every container's PATH.
	PathDirs []string
	// Selector picks the pods and Services the runner handles; nil means
	// app.kubernetes.io/managed-by=ferry.
	Selector labels.Selector
	// Log receives what the runner does.
	Log logr.Logger
}

// Runner plays kubelet for the selected pods of one Node.
type Runner struct {
	opts     Options
	log      logr.Logger
	client   kubernetes.Interface
	pods     listerscorev1.PodLister
	services listerscorev1.ServiceLister
	queue    workqueue.TypedRateLimitingInterface[string]
	ips      *ipPool
	server   *http.Server
	// published remembers the LoadBalancer ingress last written per Service UID.
	published sync.Map

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	errors  []string       // failures that mean the runner is not doing its job, see Errors
	wg      sync.WaitGroup // workers and loops
}

// New checks the options and builds a Runner; Start runs it.
func New(opts Options) (*Runner, error) {
	var errs []error
	if opts.Client == nil {
		errs = append(errs, errors.New("Client is required"))
	}
	if opts.NodeName == "" {
		errs = append(errs, errors.New("NodeName is required"))
	}
	if net.ParseIP(opts.NodeIP) == nil {
		errs = append(errs, fmt.Errorf("NodeIP %q is not an IP address", opts.NodeIP))
	}
	if opts.KubeletPort <= 0 || opts.KubeletPort > 65535 {
		errs = append(errs, fmt.Errorf("KubeletPort %d is out of range", opts.KubeletPort))
	}
	if opts.TLS == nil || len(opts.TLS.Certificates) == 0 {
		errs = append(errs, errors.New("TLS with a serving certificate is required"))
	}
	if len(opts.PodIPs) == 0 {
		errs = append(errs, errors.New("PodIPs must not be empty"))
	}
	for _, ip := range opts.PodIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("pod IP %q is not an IP address", ip))
		}
	}
	if opts.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("podrunner options: %w", errors.Join(errs...))
	}
	if opts.Selector == nil {
		opts.Selector = labels.SelectorFromSet(labels.Set{keys.ManagedByLabel: keys.ManagedByValue})
	}
	return &Runner{
		opts:    opts,
		log:     opts.Log.WithValues("node", opts.NodeName),
		client:  opts.Client,
		ips:     newIPPool(opts.PodIPs),
		workers: map[types.UID]*podWorker{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](
			100*time.Millisecond, 5*time.Second)),
	}, nil
}

// Start registers the Node, starts the kubelet endpoint and begins handling pods. It returns
// once the runner is serving; it stops when ctx ends (then Wait waits for the pods' processes).
func (r *Runner) Start(ctx context.Context) error {
	if err := os.MkdirAll(r.opts.Dir, 0o755); err != nil {
		return err
	}
	if err := r.registerNode(ctx); err != nil {
		return err
	}
	if err := r.serveKubelet(ctx); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = r.opts.Selector.String() }))
	podInformer := factory.Core().V1().Pods()
	svcInformer := factory.Core().V1().Services()
	r.pods, r.services = podInformer.Lister(), svcInformer.Lister()
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueuePod,
		UpdateFunc: func(_, obj any) { r.enqueuePod(obj) },
		DeleteFunc: r.enqueuePod,
	}); err != nil {
		return err
	}
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueueService,
		UpdateFunc: func(_, obj any) { r.enqueueService(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("podrunner: %v informer did not sync", typ)
		}
	}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.heartbeat(ctx) }()
	go func() {
		defer r.wg.Done()
		<-ctx.Done()
		r.queue.ShutDown()
		r.stopAll()
		factory.Shutdown()
	}()
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.work(ctx) }()
	r.log.Info("pod runner started", "kubelet", net.JoinHostPort(r.opts.NodeIP, strconv.Itoa(r.opts.KubeletPort)))
	return nil
}

// Wait returns after Start's context ended and every pod process is gone.
func (r *Runner) Wait() { r.wg.Wait() }

// Errors lists (once each, at most 20) failures that mean the runner is not doing kubelet's job
// (e.g. a pod status the API server refused), so tests waiting on a pod can fail with the
// reason instead of timing out.
func (r *Runner) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

func (r *Runner) reportError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := err.Error()
	for _, e := range r.errors {
		if e == msg {
			return
		}
	}
	if len(r.errors) < 20 {
		r.errors = append(r.errors, msg)
	}
}

func (r *Runner) work(ctx context.Context) {
	for {
		key, quit := r.queue.Get()
		if quit {
			return
		}
		if err := r.sync(ctx, key); err != nil {
			r.log.Error(err, "sync failed, retrying", "key", key)
			r.queue.AddRateLimited(key)
		} else {
			r.queue.Forget(key)
		}
		r.queue.Done(key)
	}
}

// stopAll kills every pod process (the stack is going away; pod objects are left as they are).
func (r *Runner) stopAll() {
	r.mu.Lock()
	ws := make([]*podWorker, 0, len(r.workers))
	for _, w := range r.workers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.kill(0); <-w.done }()
	}
	wg.Wait()
	if r.server != nil {
		_ = r.server.Close()
	}
}

// worker returns the worker of a pod UID, or nil.
func (r *Runner) worker(uid types.UID) *podWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workers[uid]
}

// workerByName returns the newest worker of namespace/name, or nil.
func (r *Runner) workerByName(namespace, name string) *podWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *podWorker
	for _, w := range r.workers {
		if w.namespace == namespace && w.name == name && (best == nil || w.created.After(best.created)) {
			best = w
		}
	}
	return best
}

// ipPool hands out pod addresses round-robin, so a fresh pod rarely reuses the address of one
// that just went away.
type ipPool struct {
	mu    sync.Mutex
	ips   []string
	next  int
	inUse map[string]types.UID
}

func newIPPool(ips []string) *ipPool {
	return &ipPool{ips: ips, inUse: map[string]types.UID{}}
}

func (p *ipPool) allocate(uid types.UID) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ip, owner := range p.inUse {
		if owner == uid {
			return ip, nil
		}
	}
	for range p.ips {
		ip := p.ips[p.next]
		p.next = (p.next + 1) % len(p.ips)
		if _, taken := p.inUse[ip]; !taken {
			p.inUse[ip] = uid
			return ip, nil
		}
	}
	return "", fmt.Errorf("all %d pod addresses are in use", len(p.ips))
}

func (p *ipPool) release(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ip, owner := range p.inUse {
		if owner == uid {
			delete(p.inUse, ip)
		}
	}
}

// isTerminal reports whether a pod phase is final.
func isTerminal(phase corev1.PodPhase) bool {
	return phase == corev1.PodSucceeded || phase == corev1.PodFailed
}
