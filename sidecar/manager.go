package sidecar

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// Options configure the sidecar.
type Options struct {
	// Kubeconfig of the source cluster and the context in it; "" means $KUBECONFIG (its
	// current context), else in-cluster.
	Kubeconfig, Context string
	// Namespace is Velero's namespace.
	Namespace      string
	MetricsAddress string
	HealthAddress  string
	// Workers is the number of objects each reconciler works on at once (transfers themselves
	// are bounded by ferry-config's concurrency).
	Workers int
}

// NewManager builds the sidecar's controller manager and the Env its reconcilers share. The
// manager holds the Lease operation.SidecarLease in Velero's namespace: only one sidecar acts
// at a time, and the plugins know one runs.
func NewManager(opts Options) (ctrl.Manager, *Env, error) {
	cfg, err := kube.RESTConfig(opts.Kubeconfig, opts.Context)
	if err != nil {
		return nil, nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	ours := labels.SelectorFromSet(map[string]string{keys.ManagedByLabel: keys.ManagedByValue})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddress},
		HealthProbeBindAddress:        opts.HealthAddress,
		LeaderElection:                true,
		LeaderElectionID:              operation.SidecarLease,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		// Only ferry's own pods are cached: an app cluster has many pods, and the app's are
		// read directly when a final transfer needs them.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: ours}}},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, nil, err
	}
	source, err := kube.NewClients(cfg, opts.Namespace)
	if err != nil {
		return nil, nil, err
	}
	// The key the plugins sign requests with: made once, before the plugins can need it.
	if err := kube.EnsureRequestKey(context.Background(), source); err != nil {
		return nil, nil, fmt.Errorf("creating the request signing key %s/%s: %w", opts.Namespace, operation.RequestKeySecret, err)
	}
	env := &Env{
		Source:   source,
		Cache:    mgr.GetClient(),
		Targets:  &kube.Targets{Source: source},
		Recorder: mgr.GetEventRecorderFor("ferry-datamover"),
		Clock:    clock.RealClock{},
	}
	return mgr, env, nil
}
