package stack

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// TargetSecret is the Secret ConfigureFerry puts the target cluster's kubeconfig in.
const TargetSecret = "ferry-target"

// ConfigureFerry sets ferry up on the source cluster as deploy/ does on a real one: its RBAC and
// admission policy on both clusters (once per stack), the ferry-config ConfigMap with data
// (validated first; transferImage defaults to TransferImage) and the Secret holding a kubeconfig
// of the target's ferry-target identity.
func (s *Stack) ConfigureFerry(ctx context.Context, data map[string]string) error {
	if _, err := config.Parse(data); err != nil {
		return err
	}
	data = maps.Clone(data)
	if data["transferImage"] == "" {
		data["transferImage"] = TransferImage
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

// Sidecar is a running ferry-datamover controller.
type Sidecar struct {
	*Process
	// MetricsAddress serves its Prometheus metrics.
	MetricsAddress string
}

// sidecars remembers the sidecar each stack runs.
var sidecars = struct {
	sync.Mutex
	running map[*Stack]*Sidecar
}{running: map[*Stack]*Sidecar{}}

// EnsureSidecar returns the stack's running sidecar, starting one if there is none (or it
// exited). Only one should run: like two Velero pods, two sidecars would contend for the Lease.
func (s *Stack) EnsureSidecar(ctx context.Context) (*Sidecar, error) {
	if s.RealNodes() {
		// Its target kubeconfig reaches the target through the node network, which this
		// machine's processes cannot.
		return nil, fmt.Errorf("with real nodes the data mover runs in a pod: InstallDatamover")
	}
	sidecars.Lock()
	defer sidecars.Unlock()
	if p := sidecars.running[s]; p != nil {
		if exited, _ := p.Exited(); !exited {
			return p, nil
		}
	}
	p, err := s.startSidecar(ctx)
	if err != nil {
		return nil, err
	}
	sidecars.running[s] = p
	return p, nil
}

// startSidecar starts `ferry-datamover controller` against the source cluster, as a host
// process (in a real cluster it is a container of Velero's pod) with the identity deploy/ gives
// it (ConfigureFerry must have run), and waits until it holds its Lease, the sign the plugins
// look for.
func (s *Stack) startSidecar(ctx context.Context) (*Sidecar, error) {
	if s.ferry.Datamover == "" {
		return nil, fmt.Errorf("ferry is not installed on the stack: ConfigureFerry first")
	}
	metrics, err := freeLoopbackAddress()
	if err != nil {
		return nil, err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name: fmt.Sprintf("ferry-datamover-%d", time.Now().UnixNano()),
		Path: filepath.Join(s.FerryBinDir, "ferry-datamover"),
		Args: []string{"controller", "--kubeconfig", s.ferry.Datamover, "--namespace", s.Source.VeleroNamespace,
			"--metrics-address", metrics, "--health-address", "0"},
	})
	if err != nil {
		return nil, err
	}
	alive := func() error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("ferry-datamover exited: %v", err)
		}
		return nil
	}
	if err := s.Source.waitDatamoverLease(ctx, func(string) bool { return true }, alive); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.Tail(30))
	}
	return &Sidecar{Process: p, MetricsAddress: metrics}, nil
}

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

func freeLoopbackAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
