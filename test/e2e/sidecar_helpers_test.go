//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/test/demo"
	"github.com/ferry-dev/ferry/test/images"
	"github.com/ferry-dev/ferry/test/stack"
)

// baseFerryConfig is what every sidecar test starts from: the demo's (endpoints through
// LoadBalancer Services, the target's "fast" class, plain-HTTP registries), so the demo runs
// beside the other tests on the shared stack.
var baseFerryConfig = demo.FerryConfig

// useSidecar configures ferry on the source (ferry-config with base plus overrides, and the
// target kubeconfig Secret) and makes sure the sidecar runs next to the source's Velero. A
// stack has one ferry-config: tests with overrides use a stack of their own (or one shared only
// with tests of the same overrides); tests with the base config (nil) share the default stack.
func useSidecar(t *testing.T, ctx context.Context, s *stack.Stack, overrides map[string]string) *stack.Sidecar {
	t.Helper()
	data := map[string]string{}
	for k, v := range baseFerryConfig {
		data[k] = v
	}
	for k, v := range overrides {
		data[k] = v
	}
	require.NoError(t, s.ConfigureFerry(ctx, data))
	p, err := s.EnsureSidecar(ctx)
	require.NoError(t, err)
	return p
}

// deploymentUsing is a Deployment whose pods mount the PVC at /srv and serve it over HTTP on
// port 8080 (busybox httpd of the stack's app image, see appImage).
func deploymentUsing(ns, name string, replicas int32, claim, image string) *appsv1.Deployment {
	d := deployment(ns, name, replicas, image)
	d.Spec.Template.Spec.Containers[0].Command = images.Serve("/srv", 8080, "")
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
	}}}
	d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/srv"}}
	return d
}

// appImage is the stack's test app image (busybox: sh, httpd, wget), pulled from the source's
// registry by the nodes of both clusters.
func appImage(s *stack.Stack) string { return s.Source.Image(images.AppName) }

// migrationBackup runs `velero backup create` with ferry's migration label and waits for it.
func migrationBackup(t *testing.T, ctx context.Context, c *stack.Cluster, kind, ns string, extra ...string) (*velerov1.Backup, error) {
	t.Helper()
	name := stack.UniqueName(kind)
	args := append([]string{"--include-namespaces", ns, "--snapshot-volumes=false", "--labels", keys.Migration + "=" + kind}, extra...)
	b, err := c.CreateBackup(ctx, name, args...)
	if b == nil {
		require.NoError(t, err)
	}
	return b, err
}

// restoreOnTarget runs `velero restore create --from-backup` on the target once the backup has
// synced there, and checks that the restore completed.
func restoreOnTarget(t *testing.T, ctx context.Context, s *stack.Stack, backup, prefix string, extra ...string) {
	t.Helper()
	_, err := s.Target.WaitBackupSynced(ctx, backup)
	require.NoError(t, err)
	r, err := s.Target.CreateRestore(ctx, stack.UniqueName(prefix), append([]string{"--from-backup", backup}, extra...)...)
	require.NoError(t, err)
	assert.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
}

// transferStatus reads the sidecar's report on a source PVC.
// t may be an assert.CollectT inside an Eventually.
func transferStatus(t require.TestingT, ctx context.Context, c *stack.Cluster, ns, name string) *operation.TransferStatus {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	p, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	st, err := operation.ParseTransferStatus(p.Annotations)
	require.NoError(t, err)
	require.NotNil(t, st, "PVC %s/%s has no transfer status", ns, name)
	return st
}

// waitTransfer waits until the PVC's transfer with id ends, and returns its status.
func waitTransfer(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name, id string, within time.Duration) *operation.TransferStatus {
	t.Helper()
	var st *operation.TransferStatus
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st = transferStatus(ct, ctx, c, ns, name)
		require.Equal(ct, id, st.ID)
		require.True(ct, st.Phase.Terminal(), "phase %s: %s", st.Phase, st.Message)
	}, within, time.Second)
	return st
}

// noTransferLeftovers checks that nothing ferry made for transfers remains in namespace ns of
// either cluster: pods, Secrets, Services, service accounts and RoleBindings are deleted after a
// transfer (and no restore brings them back).
func noTransferLeftovers(t *testing.T, ctx context.Context, s *stack.Stack, namespaces ...string) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{keys.ManagedByLabel: keys.ManagedByValue}).String()}
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		for _, c := range s.Clusters() {
			for _, ns := range namespaces {
				pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, sel)
				require.NoError(ct, err)
				assert.Empty(ct, names(pods.Items), "transfer pods left in %s on the %s cluster", ns, c.Name)
				secrets, err := c.Kube.CoreV1().Secrets(ns).List(ctx, sel)
				require.NoError(ct, err)
				assert.Empty(ct, names(secrets.Items), "transfer Secrets left in %s on the %s cluster", ns, c.Name)
				svcs, err := c.Kube.CoreV1().Services(ns).List(ctx, sel)
				require.NoError(ct, err)
				assert.Empty(ct, names(svcs.Items), "transfer Services left in %s on the %s cluster", ns, c.Name)
				sas, err := c.Kube.CoreV1().ServiceAccounts(ns).List(ctx, sel)
				require.NoError(ct, err)
				assert.Empty(ct, names(sas.Items), "transfer service accounts left in %s on the %s cluster", ns, c.Name)
				rbs, err := c.Kube.RbacV1().RoleBindings(ns).List(ctx, sel)
				require.NoError(ct, err)
				assert.Empty(ct, names(rbs.Items), "transfer RoleBindings left in %s on the %s cluster", ns, c.Name)
			}
		}
	}, time.Minute, time.Second)
}

// names lists the names of API objects, for messages that stay readable.
func names[T any, P interface {
	*T
	GetName() string
}](items []T) []string {
	var out []string
	for i := range items {
		out = append(out, P(&items[i]).GetName())
	}
	return out
}

// eventReasons lists the reasons of the Events on an object.
func eventReasons(t *testing.T, ctx context.Context, c *stack.Cluster, ns, kind, name string) []string {
	t.Helper()
	list, err := c.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
	require.NoError(t, err)
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason)
	}
	return out
}

// fillVolume writes an app-like tree: nested folders, many small files, a larger one, an empty
// one, a symlink and a hard link, with several owners and modes (the test runs as root).
func fillVolume(t *testing.T, dir string) {
	t.Helper()
	write := func(rel string, size int, mode os.FileMode, uid int) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(p, b, mode))
		require.NoError(t, os.Chmod(p, mode))
		require.NoError(t, os.Lchown(p, uid, uid))
	}
	for i := 0; i < 200; i++ {
		write(fmt.Sprintf("uploads/%02d/file-%03d.bin", i%10, i), 1024+i*37, 0o640, 1000+i%3)
	}
	write("db/big.dat", 16<<20, 0o600, 999)
	write("empty", 0, 0o644, 0)
	write("uploads/with space and ünïcode.txt", 100, 0o644, 1000)
	require.NoError(t, os.Symlink("uploads/00/file-000.bin", filepath.Join(dir, "latest")))
	require.NoError(t, os.Link(filepath.Join(dir, "db/big.dat"), filepath.Join(dir, "db/big.hardlink")))
}

// mutate changes the tree as a running app would: rewrites n files, adds one, deletes one. It
// returns how many regular files a delta must send (changed plus added).
func mutate(t *testing.T, dir string, round, n int) int {
	t.Helper()
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("uploads/%02d/file-%03d.bin", i%10, i+round*7))
		b := make([]byte, 2048)
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(p, b, 0o640))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("uploads/new-%d.txt", round)), []byte(strings.Repeat("x", 500)), 0o644))
	gone := 190 + round // file i lives in uploads/<i%10>/
	require.NoError(t, os.Remove(filepath.Join(dir, fmt.Sprintf("uploads/%02d/file-%03d.bin", gone%10, gone))))
	return n + 1
}

// describeBackup is `velero backup describe --details`, as a user reads it.
func describeBackup(t *testing.T, ctx context.Context, c *stack.Cluster, name string) string {
	t.Helper()
	out, err := c.Velero(ctx, "backup", "describe", name, "--details")
	require.NoError(t, err)
	return out
}

func prettyJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return buf.String()
}

// appWithData makes a namespace (prefix) on the source with PVC "data", filled by fillVolume
// plus a random file of bigMiB MiB (random, so no compression shortens its copy), and Deployment
// "web" with replicas mounting it. It returns the namespace and the volume's folder.
func appWithData(t *testing.T, ctx context.Context, s *stack.Stack, prefix string, replicas int32, bigMiB int) (string, string) {
	t.Helper()
	ns := s.Namespace(t, prefix)
	create(t, ctx, s.Source, pvc(ns, "data"), deploymentUsing(ns, "web", replicas, "data", appImage(s)))
	dir := boundVolumeDir(t, ctx, s.Source, ns, "data")
	fillVolume(t, dir)
	if bigMiB > 0 {
		big := make([]byte, bigMiB<<20)
		_, _ = rand.Read(big)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o640))
	}
	return ns, dir
}
