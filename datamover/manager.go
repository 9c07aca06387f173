package datamover

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imagesidecar "github.com/ferry-dev/ferry/imagecopy/sidecar"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/transfer"
)

// ControllerOptions configure the sidecar.
type ControllerOptions struct {
	// Kubeconfig of the source cluster; "" means $KUBECONFIG, else in-cluster.
	Kubeconfig string
	// Namespace is Velero's namespace.
	Namespace      string
	MetricsAddress string
	HealthAddress  string
	// Workers is the number of PVCs reconciled at once (transfers themselves are bounded by
	// ferry-config's concurrency).
	Workers int
}

// RESTConfig loads a kubeconfig the way kubectl and Velero do: an explicit path, else
// $KUBECONFIG, else the in-cluster service account.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster's kubeconfig: %w", err)
	}
	return cfg, nil
}

// RunController runs the sidecar until ctx ends. It holds the Lease transfer.SidecarLease in
// Velero's namespace: only one sidecar acts at a time, and the plugins know one is installed.
func RunController(ctx context.Context, opts ControllerOptions) error {
	cfg, err := RESTConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	ours := labels.SelectorFromSet(map[string]string{keys.ManagedByLabel: keys.ManagedByValue})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddress},
		HealthProbeBindAddress:        opts.HealthAddress,
		LeaderElection:                true,
		LeaderElectionID:              transfer.SidecarLease,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		// Only ferry's own pods are cached: an app cluster has many pods, and the app's are
		// read directly when a final transfer needs them.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: ours}}},
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	c, err := NewController(mgr, opts.Namespace)
	if err != nil {
		return err
	}
	workers := opts.Workers
	if workers < 1 {
		workers = 4
	}
	if err := c.SetupWithManager(mgr, workers); err != nil {
		return err
	}
	// Image streams: copied registry to registry by the same sidecar (imagecopy/sidecar).
	if err := imagesidecar.Setup(mgr, opts.Namespace, workers); err != nil {
		return fmt.Errorf("setting up image-stream copies: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
