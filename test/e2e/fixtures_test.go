//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	routev1 "github.com/openshift/api/route/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/test/stack"
)

// Builders for the small stateful app the e2e tests migrate: a Deployment mounting a PVC, a
// Secret, a Service and (on OpenShift) Routes.

var routeGVR = schema.GroupVersionResource{Group: "route.openshift.io", Version: "v1", Resource: "routes"}

const appLabel = "app"

func deployment(ns, name string, replicas int32, images ...string) *appsv1.Deployment {
	labels := map[string]string{appLabel: name}
	var containers []corev1.Container
	for i, img := range images {
		c := corev1.Container{Name: name, Image: img, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/data"}}}
		if i > 0 {
			c.Name = name + "-sidecar"
			c.VolumeMounts = nil
		}
		containers = append(containers, c)
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: containers,
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-data"},
					}}},
				},
			},
		},
	}
}

func pvc(ns, name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{appLabel: name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
}

// route builds a Route to service svc. generated marks the host as the router made it, the way
// OpenShift records it.
func route(t testing.TB, ns, name, svc, host string, generated bool) *unstructured.Unstructured {
	r := &routev1.Route{
		TypeMeta:   metav1.TypeMeta{APIVersion: "route.openshift.io/v1", Kind: "Route"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: routev1.RouteSpec{
			Host: host,
			To:   routev1.RouteTargetReference{Kind: "Service", Name: svc},
		},
	}
	if generated {
		r.Annotations = map[string]string{keys.RouteHostGenerated: "true"}
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r)
	require.NoError(t, err)
	return &unstructured.Unstructured{Object: obj}
}

// writeVolume waits until the PVC is bound and writes files into its volume's folder, as the
// app would.
func writeVolume(t testing.TB, ctx context.Context, c *stack.Cluster, ns, claim string, files map[string]string) {
	t.Helper()
	dir := boundVolumeDir(t, ctx, c, ns, claim)
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o640))
	}
}

// boundVolumeDir waits until the PVC is bound and returns its host-path folder.
func boundVolumeDir(t testing.TB, ctx context.Context, c *stack.Cluster, ns, claim string) string {
	t.Helper()
	var dir string
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		p, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		require.NoError(ct, err)
		require.Equal(ct, corev1.ClaimBound, p.Status.Phase, "PVC %s/%s on the %s cluster", ns, claim, c.Name)
		pv, err := c.Kube.CoreV1().PersistentVolumes().Get(ctx, p.Spec.VolumeName, metav1.GetOptions{})
		require.NoError(ct, err)
		require.NotNil(ct, pv.Spec.HostPath, "PV %s has no hostPath", pv.Name)
		dir = pv.Spec.HostPath.Path
	}, 2*time.Minute, 250*time.Millisecond)
	return dir
}

// create creates objects (typed or unstructured) on the cluster.
func create(t testing.TB, ctx context.Context, c *stack.Cluster, objs ...crclient.Object) {
	t.Helper()
	for _, o := range objs {
		require.NoError(t, c.Client.Create(ctx, o), "creating %T %s/%s on the %s cluster", o, o.GetNamespace(), o.GetName(), c.Name)
	}
}
