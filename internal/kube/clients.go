// Package kube holds the Kubernetes plumbing shared by ferry's plugins and sidecar: clients built
// the way Velero builds its own, and questions asked of discovery (is this OpenShift? which version?).
package kube

import (
	"context"
	"fmt"
	"sync"

	securityclient "github.com/openshift/client-go/security/clientset/versioned"
	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
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

// RESTConfig loads a kubeconfig the way kubectl and Velero do: an explicit path, else
// $KUBECONFIG, else the in-cluster service account; context "" is the kubeconfig's current one.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster's kubeconfig: %w", err)
	}
	return cfg, nil
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

// RequestKey reads the key that signs ferry's requests (operation.RequestKeySecret in Velero's
// namespace). Its absence is a configuration problem: the data mover creates it at start.
func RequestKey(ctx context.Context, c *Clients) ([]byte, error) {
	s, err := c.Kube.CoreV1().Secrets(c.Namespace).Get(ctx, operation.RequestKeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, config.Error(fmt.Errorf("Secret %s/%s, the key that signs ferry's requests, does not exist: ferry-datamover creates it when it starts; is it installed and running?", c.Namespace, operation.RequestKeySecret))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the request signing key %s/%s: %w", c.Namespace, operation.RequestKeySecret, err)
	}
	key := s.Data[operation.RequestKeyField]
	if len(key) < 16 {
		return nil, config.Error(fmt.Errorf("Secret %s/%s has no usable key %q: delete it and restart ferry-datamover to make a new one", c.Namespace, operation.RequestKeySecret, operation.RequestKeyField))
	}
	return key, nil
}

// EnsureRequestKey creates the request signing key unless it exists (the data mover, at start).
func EnsureRequestKey(ctx context.Context, c *Clients) error {
	if _, err := RequestKey(ctx, c); err == nil || !config.IsError(err) {
		return err
	}
	key, err := operation.NewRequestKey()
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: operation.RequestKeySecret,
			Labels: map[string]string{keys.ManagedByLabel: keys.ManagedByValue, keys.ExcludeFromBackup: "true"}},
		Data: map[string][]byte{operation.RequestKeyField: key},
	}
	_, err = c.Kube.CoreV1().Secrets(c.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
