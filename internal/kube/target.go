package kube

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferry-dev/ferry/internal/config"
)

// TargetKubeconfigKey is the key of the target cluster's kubeconfig in its Secret.
const TargetKubeconfigKey = "kubeconfig"

// Targets builds the target cluster's clients from the kubeconfig Secret named in ferry-config
// (in Velero's namespace of the Source cluster), again only when the Secret changes. An empty
// name means the target is the source cluster itself (a storage-class migration).
type Targets struct {
	// Source reaches the cluster and namespace holding the Secret.
	Source *Clients

	mu     sync.Mutex
	key    string // namespace/name@resourceVersion of the Secret the cached clients came from
	cached *Clients
}

// Get returns the target cluster's clients.
func (t *Targets) Get(ctx context.Context, secretName string) (*Clients, error) {
	if secretName == "" {
		return t.Source, nil
	}
	id := t.Source.Namespace + "/" + secretName
	secret, err := t.Source.Kube.CoreV1().Secrets(t.Source.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, config.Error(fmt.Errorf("the target cluster's kubeconfig Secret %s does not exist: create it with `kubectl -n %s create secret generic %s --from-file=%s=<target kubeconfig>`",
			id, t.Source.Namespace, secretName, TargetKubeconfigKey))
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", id, err)
	}
	key := id + "@" + secret.ResourceVersion
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cached != nil && t.key == key {
		return t.cached, nil
	}
	raw, ok := secret.Data[TargetKubeconfigKey]
	if !ok {
		return nil, config.Error(fmt.Errorf("Secret %s has no key %q holding the target cluster's kubeconfig", id, TargetKubeconfigKey))
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, config.Error(fmt.Errorf("Secret %s: key %q is not a usable kubeconfig: %v", id, TargetKubeconfigKey, err))
	}
	c, err := NewClients(cfg, "")
	if err != nil {
		return nil, config.Error(err)
	}
	t.cached, t.key = c, key
	return c, nil
}
