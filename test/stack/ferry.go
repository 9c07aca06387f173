package stack

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/proctest"
)

// TargetSecret is the Secret ConfigureFerry puts the target cluster's kubeconfig in.
const TargetSecret = "ferry-target"

// ConfigureFerry sets ferry up on the source cluster as deploy/ does on a real one: its RBAC and
// admission policy on both clusters (once per stack), the ferry-config ConfigMap with data
// (validated first; transferImage defaults to TransferImage()) and the Secret holding a kubeconfig
// of the target's ferry-target identity.
func (s *Stack) ConfigureFerry(ctx context.Context, data map[string]string) error {
	if _, err := config.Parse(data); err != nil {
		return err
	}
	data = maps.Clone(data)
	if data["transferImage"] == "" {
		data["transferImage"] = s.TransferImage()
	}
	ids, err := s.installFerry(ctx)
	if err != nil {
		return err
	}
	if err := s.setTransferImage(ctx, data["transferImage"]); err != nil {
		return err
	}
	c := s.Source
	cms := c.Kube.CoreV1().ConfigMaps(c.VeleroNamespace)
	// Parallel tests may configure the same data at once: unchanged data is not written again,
	// and a conflict is retried on the newer version.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cms.Get(ctx, config.ConfigMapName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.VeleroNamespace, Name: config.ConfigMapName}, Data: data}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), config.ConfigMapName, err)
			}
			return err
		case err != nil:
			return err
		case maps.Equal(cur.Data, data):
			return nil
		}
		cur.Data = data
		_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("writing ferry-config: %w", err)
	}
	secrets := c.Kube.CoreV1().Secrets(c.VeleroNamespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		secret, err := secrets.Get(ctx, TargetSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.VeleroNamespace, Name: TargetSecret},
				Data: map[string][]byte{kube.TargetKubeconfigKey: ids.Target}}
			_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("secrets"), TargetSecret, err)
			}
			return err
		case err != nil || bytes.Equal(secret.Data[kube.TargetKubeconfigKey], ids.Target):
			return err
		}
		secret.Data = map[string][]byte{kube.TargetKubeconfigKey: ids.Target}
		_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("writing the target kubeconfig Secret: %w", err)
	}
	return nil
}

// Sidecar is the data mover as deploy/datamover runs it: the one pod of its Deployment in
// Velero's namespace on the source.
type Sidecar struct {
	c *Cluster
	// Pod is the data mover's pod; UID its uid.
	Pod string
	UID string
}

// EnsureSidecar makes sure the data mover runs: deploy/datamover is installed (InstallDatamover,
// once per stack), scaled to one replica (after StopSidecar), its pod ready and holding the
// Lease the plugins look for (a new holder after Kill). ConfigureFerry must have run.
func (s *Stack) EnsureSidecar(ctx context.Context) (*Sidecar, error) {
	s.datamover.Lock()
	defer s.datamover.Unlock()
	if !s.datamover.installed {
		if err := s.InstallDatamover(ctx); err != nil {
			return nil, err
		}
		s.datamover.installed = true
	}
	c := s.Source
	deployments := c.Kube.AppsV1().Deployments(c.VeleroNamespace)
	if _, err := deployments.Patch(ctx, DatamoverDeployment, types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("scaling the data mover to one replica: %w", err)
	}
	var p *Sidecar
	err := wait.PollUntilContextTimeout(ctx, pollInterval, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		p, err = s.datamoverPod(ctx, true)
		return p != nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("the data mover's pod is not ready: %w\n%s", err, s.datamoverPods(ctx))
	}
	killed := s.datamover.killed
	fresh := func(holder string) bool { return strings.HasPrefix(holder, p.Pod+"_") && holder != killed }
	if err := c.waitDatamoverLease(ctx, fresh, func() error { return nil }); err != nil {
		logs, _ := c.Kubectl(context.Background(), "-n", c.VeleroNamespace, "logs", p.Pod, "--tail=30")
		return nil, fmt.Errorf("%w\n%s", err, logs)
	}
	return p, nil
}

// StopSidecar scales the data mover to zero replicas, as an admin stopping it would, and waits
// until its pod is gone. EnsureSidecar brings it back.
func (s *Stack) StopSidecar(ctx context.Context) error {
	s.datamover.Lock()
	defer s.datamover.Unlock()
	c := s.Source
	if _, err := c.Kube.AppsV1().Deployments(c.VeleroNamespace).Patch(ctx, DatamoverDeployment, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scaling the data mover to zero: %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, pollInterval, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods(c.VeleroNamespace).List(ctx, metav1.ListOptions{LabelSelector: datamoverSelector})
		return err == nil && len(pods.Items) == 0, err
	})
}

// datamoverSelector selects the data mover's pods (deploy/datamover's labels).
const datamoverSelector = "app.kubernetes.io/name=ferry,app.kubernetes.io/component=datamover"

// datamoverPod is the data mover's one pod that is running (and, if ready, Ready), nil while
// there is none or more than one (a rollout in progress).
func (s *Stack) datamoverPod(ctx context.Context, ready bool) (*Sidecar, error) {
	c := s.Source
	pods, err := c.Kube.CoreV1().Pods(c.VeleroNamespace).List(ctx, metav1.ListOptions{LabelSelector: datamoverSelector})
	if err != nil || len(pods.Items) != 1 {
		return nil, err
	}
	pod := pods.Items[0]
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return nil, nil
	}
	if ready && !podReady(&pod) {
		return nil, nil
	}
	return &Sidecar{c: c, Pod: pod.Name, UID: string(pod.UID)}, nil
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// datamoverPods lists the data mover's pods with their state, for error messages.
func (s *Stack) datamoverPods(ctx context.Context) string {
	out, _ := s.Source.Kubectl(context.Background(), "-n", s.Source.VeleroNamespace, "get", "pods", "-l", datamoverSelector, "-o", "wide")
	return out
}

// Cluster is the cluster the data mover runs in (the source).
func (p *Sidecar) Cluster() *Cluster { return p.c }

// Kill SIGKILLs the data mover's process in its container, as the kernel's OOM killer would:
// no goodbye, its Lease left held until it expires. kubelet starts the container again; the
// next EnsureSidecar waits until the new process holds the Lease.
func (p *Sidecar) Kill(ctx context.Context) error {
	s := p.c.stack
	s.datamover.Lock()
	defer s.datamover.Unlock()
	if l, err := p.c.Kube.CoordinationV1().Leases(p.c.VeleroNamespace).Get(ctx, operation.SidecarLease, metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
		s.datamover.killed = *l.Spec.HolderIdentity
	}
	var killed int
	for _, pid := range proctest.PodPIDs(p.UID) {
		if argv := proctest.Args(pid); len(argv) > 1 && filepath.Base(argv[0]) == "ferry-datamover" && argv[1] == "controller" {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				return fmt.Errorf("killing the data mover (pid %d): %w", pid, err)
			}
			killed++
		}
	}
	if killed == 0 {
		return fmt.Errorf("no ferry-datamover controller process in pod %s", p.Pod)
	}
	s.logf("stack: data mover in pod %s SIGKILLed", p.Pod)
	return nil
}

// Metrics reads the data mover's Prometheus endpoint through the API server's pod proxy, as
// `kubectl get --raw` would.
func (p *Sidecar) Metrics(ctx context.Context) (string, error) {
	body, err := p.c.Kube.CoreV1().Pods(p.c.VeleroNamespace).ProxyGet("http", p.Pod, datamoverMetricsPort, "metrics", nil).DoRaw(ctx)
	return string(body), err
}

// datamoverMetricsPort is where deploy/datamover's container serves its metrics.
const datamoverMetricsPort = "8087"

// waitDatamoverLease waits (up to 2 minutes) until the data mover's Lease is fresh and held by a
// holder that holder accepts: the sign the plugins look for. alive fails the wait early when the
// data mover is known to have ended.
func (c *Cluster) waitDatamoverLease(ctx context.Context, holder func(string) bool, alive func() error) error {
	leases := c.Kube.CoordinationV1().Leases(c.VeleroNamespace)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if err := alive(); err != nil {
			return err
		}
		l, err := leases.Get(ctx, operation.SidecarLease, metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil && holder(*l.Spec.HolderIdentity) &&
			l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < 10*time.Second {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the data mover did not take its Lease: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}
