//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/test/stack"
)

// TestMigrateNamespaceOpenShift moves a namespace from the source to the target cluster the
// way a user does (velero backup create there, velero restore create here), with ferry's
// plugins loaded in both Velero servers, and checks what the user would check afterwards.
func TestMigrateNamespaceOpenShift(t *testing.T) {
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	requireFerryPlugins(t, ctx, src, dst)

	ns := s.Namespace(t, "shop")
	generatedHost := "web-" + ns + ".apps.source.example.com"
	internalImage := src.RegistryHost + "/" + ns + "/web:1"
	publicImage := "docker.io/library/busybox:1.36"
	create(t, ctx, src,
		pvc(ns, "web-data"),
		secret(ns, "db", map[string]string{"username": "shop", "password": "s3cr3t\x00binary"}),
		deployment(ns, "web", 2, internalImage, publicImage),
		service(ns, "web"),
		route(t, ns, "web", "web", generatedHost, true),
		route(t, ns, "shop", "web", "shop.example.com", false),
	)
	writeVolume(t, ctx, src, ns, "web-data", map[string]string{"index.html": "hello", "orders/1.json": `{"id":1}`})

	migrate(t, ctx, s, ns)

	t.Run("generated route host is not carried over", func(t *testing.T) {
		r, err := dst.Dynamic.Resource(routeGVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
		require.NoError(t, err)
		host, _, _ := unstructured.NestedString(r.Object, "spec", "host")
		assert.NotEqual(t, generatedHost, host, "the target's router must generate its own host (empty until it does)")
	})
	t.Run("custom route host is kept", func(t *testing.T) {
		r, err := dst.Dynamic.Resource(routeGVR).Namespace(ns).Get(ctx, "shop", metav1.GetOptions{})
		require.NoError(t, err)
		host, _, _ := unstructured.NestedString(r.Object, "spec", "host")
		assert.Equal(t, "shop.example.com", host)
	})
	t.Run("secret data is equal", func(t *testing.T) {
		want, err := src.Kube.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
		require.NoError(t, err)
		got, err := dst.Kube.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, want.Data, got.Data)
	})
	t.Run("workloads", func(t *testing.T) {
		d := requireWorkload(t, ctx, dst, ns, "web", 2)
		images := map[string]string{}
		for _, c := range d.Spec.Template.Spec.Containers {
			images[c.Name] = c.Image
		}
		assert.Equal(t, dst.RegistryHost+"/"+ns+"/web:1", images["web"], "internal registry image points at the target's registry")
		assert.Equal(t, publicImage, images["web-sidecar"], "public image unchanged")
		_, err := dst.Kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		assert.NoError(t, err, "service restored")
	})
	t.Run("an ordinary backup leaves volume data alone", func(t *testing.T) {
		assertNoDataMoved(t, ctx, s, ns, "web-data", "index.html", "orders/1.json")
	})
}

// assertNoDataMoved checks what an ordinary (non-migration) backup does to a volume whose
// files are on the source: the target provisions an empty volume of its own, and the source
// PVC carries no transfer request.
func assertNoDataMoved(t *testing.T, ctx context.Context, s *stack.Stack, ns, claim string, files ...string) {
	t.Helper()
	srcDir, dstDir := boundVolumeDir(t, ctx, s.Source, ns, claim), boundVolumeDir(t, ctx, s.Target, ns, claim)
	for _, f := range files {
		assert.FileExists(t, filepath.Join(srcDir, f), "the source keeps its data")
		assert.NoFileExists(t, filepath.Join(dstDir, f), "no data without a migration label")
	}
	p, err := s.Source.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, p.Annotations, keys.TransferID, "no transfer request on the source PVC")
}

// TestMigrateNamespacePlainKubernetes runs the same migration between two clusters without the
// OpenShift APIs: every OpenShift-only step must be skipped cleanly, so backup and restore
// complete without errors and without hanging.
func TestMigrateNamespacePlainKubernetes(t *testing.T) {
	s := stacks.Parallel(t, stack.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	requireFerryPlugins(t, ctx, src, dst)
	_, err := src.Dynamic.Resource(routeGVR).Namespace("default").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsNotFound(err), "plain Kubernetes must not serve Routes, got %v", err)

	ns := s.Namespace(t, "shop")
	image := "registry.example.com/shop/web:1"
	create(t, ctx, src,
		pvc(ns, "web-data"),
		secret(ns, "db", map[string]string{"password": "s3cr3t"}),
		deployment(ns, "web", 3, image),
		service(ns, "web"),
	)
	writeVolume(t, ctx, src, ns, "web-data", map[string]string{"index.html": "hello"})

	migrate(t, ctx, s, ns)

	got, err := dst.Kube.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "s3cr3t", string(got.Data["password"]))
	d := requireWorkload(t, ctx, dst, ns, "web", 3)
	assert.Equal(t, image, d.Spec.Template.Spec.Containers[0].Image, "no internal registry: images unchanged")
	assertNoDataMoved(t, ctx, s, ns, "web-data", "index.html")
}

// migrate backs the namespace up on the source and restores it on the target with the velero
// CLI, as a user does. A backup or restore that ends other than Completed fails the test but,
// if it got that far, the test goes on so its checks show what else is wrong.
func migrate(t *testing.T, ctx context.Context, s *stack.Stack, ns string) {
	t.Helper()
	name := stack.UniqueName(ns)
	b, err := s.Source.CreateBackup(ctx, name, "--include-namespaces", ns, "--snapshot-volumes=false")
	if b == nil {
		require.NoError(t, err)
	}
	assert.NoError(t, err)
	_, err = s.Target.WaitBackupSynced(ctx, name)
	require.NoError(t, err)
	r, err := s.Target.CreateRestore(ctx, name, "--from-backup", name)
	if r == nil {
		require.NoError(t, err)
	}
	assert.NoError(t, err)
	assert.Equal(t, velerov1.RestorePhaseCompleted, r.Status.Phase)
}

// requireFerryPlugins checks that both Velero servers run ferry's plugins, as `velero plugin
// get` reports them.
func requireFerryPlugins(t *testing.T, ctx context.Context, clusters ...*stack.Cluster) {
	t.Helper()
	for _, c := range clusters {
		var out string
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			var err error
			out, err = c.Velero(ctx, "plugin", "get")
			require.NoError(ct, err)
			require.Contains(ct, out, "ferry.dev/", "ferry's plugins in the %s cluster's Velero", c.Name)
		}, time.Minute, time.Second)
		t.Logf("%s Velero plugins with ferry's: %d", c.Name, strings.Count(out, "ferry.dev/"))
	}
}

// requireWorkload checks a restored Deployment and that the target's controllers act on it: a
// ReplicaSet with the Deployment's replicas.
func requireWorkload(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, d.Spec.Replicas)
	assert.Equal(t, replicas, *d.Spec.Replicas, "replicas")
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		rss, err := c.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=" + name})
		require.NoError(ct, err)
		var owned int32
		for _, rs := range rss.Items {
			if metav1.IsControlledBy(&rs, d) && rs.Spec.Replicas != nil {
				owned += *rs.Spec.Replicas
			}
		}
		require.Equal(ct, replicas, owned, "replicas of ReplicaSets the %s cluster's deployment controller made", c.Name)
	}, 2*time.Minute, 250*time.Millisecond)
	return d
}
