// Package kube holds the Kubernetes plumbing shared by ferry's plugins and sidecar: clients built
// the way Velero builds its own, and questions asked of discovery (is this OpenShift? which version?).
package kube

import (
	"context"
	"fmt"
	"sync"

	securityclient "github.com/openshift/client-go/security/clientset/versioned"
	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/internal/config"
)

// Clients are the clients of one cluster, plus Velero's namespace in it.
type Clients struct {
	Config    *rest.Config
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	// Security is the OpenShift security client (SCCs); calls fail on clusters without the API,
	// so ask APIs first.
	Security securityclient.Interface
	// Namespace is Velero's namespace (where ferry-config lives).
	Namespace string
	// APIs answers "is this API served?" from discovery, cached for the process.
	APIs *APIs
}

// NewClients builds the clients for a rest.Config.
func NewClients(cfg *rest.Config, namespace string) (*Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client: %w", err)
	}
	sec, err := securityclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating OpenShift security client: %w", err)
	}
	disc := memory.NewMemCacheClient(kube.Discovery())
	return &Clients{Config: cfg, Kube: kube, Dynamic: dyn, Discovery: disc, Security: sec, Namespace: namespace, APIs: NewAPIs(disc)}, nil
}

// FromVeleroFactory returns a function that builds the clients once, on first use, from the
// flags Velero hands its plugins (--kubeconfig, --kubecontext, --namespace; else $KUBECONFIG,
// else in-cluster). Plugins keep no other state: Velero starts a new plugin process per backup,
// per restore and per Progress() poll.
func FromVeleroFactory(f veleroclient.Factory) func() (*Clients, error) {
	return sync.OnceValues(func() (*Clients, error) {
		cfg, err := f.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("building client config from Velero's flags: %w", err)
		}
		return NewClients(cfg, f.Namespace())
	})
}

// LazyConfig reads ferry-config once, on first use, from the cluster the clients reach.
func LazyConfig(clients func() (*Clients, error)) func() (*config.Config, error) {
	return sync.OnceValues(func() (*config.Config, error) {
		c, err := clients()
		if err != nil {
			return nil, err
		}
		return config.Load(context.Background(), c.Kube, c.Namespace)
	})
}
