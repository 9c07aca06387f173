package imagecopy

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/kube"
)

// TargetRegistryEndpoint returns the host[:port] where the source cluster pushes images for the
// target cluster. override (ferry-config targetRegistryEndpoint) wins; otherwise the target is
// asked for its registry's external name: OpenShift 4's images.config.openshift.io/cluster
// status.externalRegistryHostnames, then the registry's default route (OpenShift 4
// openshift-image-registry/default-route, OpenShift 3 default/docker-registry). The target's
// internal registry name is never used: the source cluster cannot resolve it.
func TargetRegistryEndpoint(ctx context.Context, target *kube.Clients, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	if host, err := externalRegistryHostname(ctx, target); err != nil || host != "" {
		return host, err
	}
	for _, route := range []struct{ namespace, name string }{
		{"openshift-image-registry", "default-route"},
		{"default", "docker-registry"},
	} {
		if host, err := routeHost(ctx, target, route.namespace, route.name); err != nil || host != "" {
			return host, err
		}
	}
	return "", config.Error(fmt.Errorf("cannot find where to push images in the target cluster: it publishes no external registry name " +
		"(images.config.openshift.io/cluster status.externalRegistryHostnames) and has no registry route " +
		"(openshift-image-registry/default-route, default/docker-registry); expose the target registry " +
		"(OpenShift 4: set spec.defaultRoute=true on configs.imageregistry.operator.openshift.io/cluster) " +
		"or set targetRegistryEndpoint in ferry-config"))
}

func externalRegistryHostname(ctx context.Context, c *kube.Clients) (string, error) {
	u, err := imageConfig(ctx, c)
	if u == nil || err != nil {
		return "", err
	}
	hosts, _, _ := unstructured.NestedStringSlice(u.Object, "status", "externalRegistryHostnames")
	for _, h := range hosts {
		if h != "" {
			return h, nil
		}
	}
	return "", nil
}

func routeHost(ctx context.Context, c *kube.Clients, namespace, name string) (string, error) {
	if ok, err := c.APIs.Has(kube.RouteGV, "routes"); err != nil || !ok {
		return "", err
	}
	u, err := c.Dynamic.Resource(kube.RouteGV.WithResource("routes")).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if ignorable(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Route %s/%s in the target cluster: %w", namespace, name, err)
	}
	host, _, _ := unstructured.NestedString(u.Object, "spec", "host")
	return host, nil
}
