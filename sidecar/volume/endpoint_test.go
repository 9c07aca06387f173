package volume

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/sidecar"
)

func fakeTarget(withRoutes bool, objs ...runtime.Object) *kube.Clients {
	k := kubefake.NewSimpleClientset(objs...)
	if withRoutes {
		k.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{GroupVersion: kube.RouteGV.String(), APIResources: []metav1.APIResource{{Name: "routes", Namespaced: true}}}}
	}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{routeResource: "RouteList"})
	return &kube.Clients{Kube: k, Dynamic: dyn, APIs: kube.NewAPIs(k.Discovery())}
}

func cfgWith(t *testing.T, data map[string]string) *config.Config {
	c, err := config.Parse(data)
	require.NoError(t, err)
	return c
}

func TestEnsureEndpoint(t *testing.T) {
	ctx := context.Background()
	n := namesFor("app", "data")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.7"}},
	}}

	t.Run("LoadBalancer waits for an address, then uses it", func(t *testing.T) {
		tc := fakeTarget(false)
		cfg := cfgWith(t, map[string]string{"endpointType": "LoadBalancer"})
		_, waiting, err := ensureEndpoint(ctx, tc, cfg, "app", n, "t1")
		require.NoError(t, err)
		assert.Contains(t, waiting, "LoadBalancer")
		svc, err := tc.Kube.CoreV1().Services("app").Get(ctx, n.server, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, corev1.ServiceTypeLoadBalancer, svc.Spec.Type)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
		_, err = tc.Kube.CoreV1().Services("app").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
		require.NoError(t, err)
		ep, waiting, err := ensureEndpoint(ctx, tc, cfg, "app", n, "t1")
		require.NoError(t, err)
		assert.Empty(t, waiting)
		assert.Equal(t, "lb.example.com:8443", ep.address)
	})

	t.Run("NodePort uses a ready node's internal IP, or the configured address", func(t *testing.T) {
		tc := fakeTarget(false, node)
		cfg := cfgWith(t, map[string]string{"endpointType": "NodePort"})
		svc := endpointService(n, "app", "t1", corev1.ServiceTypeNodePort)
		svc.Spec.Ports[0].NodePort = 31443
		_, err := tc.Kube.CoreV1().Services("app").Create(ctx, svc, metav1.CreateOptions{})
		require.NoError(t, err)
		ep, _, err := ensureEndpoint(ctx, tc, cfg, "app", n, "t1")
		require.NoError(t, err)
		assert.Equal(t, "10.0.0.7:31443", ep.address)
		ep, _, err = ensureEndpoint(ctx, tc, cfgWith(t, map[string]string{"endpointType": "NodePort", "nodePortAddress": "gw.example"}), "app", n, "t1")
		require.NoError(t, err)
		assert.Equal(t, "gw.example:31443", ep.address)
	})

	t.Run("a changed endpoint type replaces the Service", func(t *testing.T) {
		tc := fakeTarget(false)
		_, err := tc.Kube.CoreV1().Services("app").Create(ctx, endpointService(n, "app", "t1", corev1.ServiceTypeLoadBalancer), metav1.CreateOptions{})
		require.NoError(t, err)
		_, _, err = ensureEndpoint(ctx, tc, cfgWith(t, map[string]string{"endpointType": "ClusterIP"}), "app", n, "t1")
		require.NoError(t, err)
		svc, err := tc.Kube.CoreV1().Services("app").Get(ctx, n.server, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, corev1.ServiceTypeClusterIP, svc.Spec.Type)
	})

	t.Run("Route on a cluster without routes is a clear error", func(t *testing.T) {
		_, _, err := ensureEndpoint(ctx, fakeTarget(false), cfgWith(t, map[string]string{"endpointType": "Route"}), "app", n, "t1")
		require.Error(t, err)
		assert.True(t, sidecar.IsPermanent(err))
		assert.Contains(t, err.Error(), "has no OpenShift Route API")
	})

	t.Run("Route with passthrough TLS waits for admission", func(t *testing.T) {
		tc := fakeTarget(true)
		cfg := cfgWith(t, map[string]string{"endpointType": "Route", "routeSubdomain": "apps.target.example"})
		ns := strings.Repeat("long-namespace-", 4) // 60 characters
		_, waiting, err := ensureEndpoint(ctx, tc, cfg, ns, n, "t1")
		require.NoError(t, err)
		assert.Contains(t, waiting, "admit")
		r, err := tc.Dynamic.Resource(routeResource).Namespace(ns).Get(ctx, n.server, metav1.GetOptions{})
		require.NoError(t, err)
		host, _, _ := unstructured.NestedString(r.Object, "spec", "host")
		term, _, _ := unstructured.NestedString(r.Object, "spec", "tls", "termination")
		assert.Equal(t, "passthrough", term)
		label, _, _ := strings.Cut(host, ".")
		assert.LessOrEqual(t, len(label), 63, "host label %q", label)
		assert.Empty(t, validation.IsDNS1123Subdomain(host))
		require.NoError(t, unstructured.SetNestedSlice(r.Object, []any{map[string]any{
			"host": host, "conditions": []any{map[string]any{"type": "Admitted", "status": "True"}},
		}}, "status", "ingress"))
		_, err = tc.Dynamic.Resource(routeResource).Namespace(ns).Update(ctx, r, metav1.UpdateOptions{})
		require.NoError(t, err)
		ep, waiting, err := ensureEndpoint(ctx, tc, cfg, ns, n, "t1")
		require.NoError(t, err)
		assert.Empty(t, waiting)
		assert.Equal(t, host+":443", ep.address)
		assert.Equal(t, host, ep.sni)
	})
}
