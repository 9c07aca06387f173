package sidecar

import (
	"context"

	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
)

// Targets gives the target cluster's clients for the kubeconfig Secret ferry-config names
// (kube.Targets: built again only when the Secret changes).
type Targets interface {
	Get(ctx context.Context, secretName string) (*kube.Clients, error)
}

// Env is what both reconcilers share, built once per process.
type Env struct {
	// Source reaches the cluster the sidecar runs in, uncached; Source.Namespace is Velero's
	// namespace (ferry-config, the target kubeconfig Secret).
	Source *kube.Clients
	// Cache is the manager's cached client: the objects the reconcilers watch.
	Cache    client.Client
	Targets  Targets
	Recorder record.EventRecorder
	// Clock stamps statuses and times phases; tests step a fake one.
	Clock clock.PassiveClock
	// Refusals holds authorization refusals back from failing an operation at once.
	Refusals Refusals
}

// Config reads ferry-config.
func (e *Env) Config(ctx context.Context) (*config.Config, error) {
	return config.Load(ctx, e.Source.Kube, e.Source.Namespace)
}

// RequestKey reads the key requests are signed with (read each time: a rotated key takes
// effect at once).
func (e *Env) RequestKey(ctx context.Context) ([]byte, error) { return kube.RequestKey(ctx, e.Source) }

// Target returns the target cluster's clients for cfg.
func (e *Env) Target(ctx context.Context, cfg *config.Config) (*kube.Clients, error) {
	return e.Targets.Get(ctx, cfg.TargetKubeconfigSecret)
}

// FixedTarget is a Targets that always answers with the same clients: a target that needs no
// Secret (unit tests, and tools that were handed the target's clients).
type FixedTarget struct{ Clients *kube.Clients }

func (f FixedTarget) Get(context.Context, string) (*kube.Clients, error) { return f.Clients, nil }
