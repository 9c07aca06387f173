package kube

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
)

// OpenShift API group versions ferry uses.
var (
	RouteGV    = schema.GroupVersion{Group: "route.openshift.io", Version: "v1"}
	SecurityGV = schema.GroupVersion{Group: "security.openshift.io", Version: "v1"}
	ImageGV    = schema.GroupVersion{Group: "image.openshift.io", Version: "v1"}
	AppsGV     = schema.GroupVersion{Group: "apps.openshift.io", Version: "v1"}
	BuildGV    = schema.GroupVersion{Group: "build.openshift.io", Version: "v1"}
	ConfigGV   = schema.GroupVersion{Group: "config.openshift.io", Version: "v1"}
)

// APIs answers whether the cluster serves a resource, asking discovery once per group version.
// On plain Kubernetes the OpenShift groups are simply absent: that is an answer, not an error.
type APIs struct {
	disc discovery.DiscoveryInterface
	mu   sync.Mutex
	// served[groupVersion] is the set of resources served, nil when the group version is absent.
	served map[string]map[string]bool
}

// NewAPIs wraps a discovery client.
func NewAPIs(disc discovery.DiscoveryInterface) *APIs {
	return &APIs{disc: disc, served: map[string]map[string]bool{}}
}

// Has reports whether resource (plural, e.g. "securitycontextconstraints") is served in gv.
func (a *APIs) Has(gv schema.GroupVersion, resource string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	set, cached := a.served[gv.String()]
	if !cached {
		list, err := a.disc.ServerResourcesForGroupVersion(gv.String())
		switch {
		// A group the server does not serve: the API server answers 404; the memory-cached
		// discovery client (what NewClients uses) answers ErrCacheNotFound.
		case apierrors.IsNotFound(err), errors.Is(err, memory.ErrCacheNotFound):
			set = nil
		case err != nil:
			return false, fmt.Errorf("discovering %s: %w", gv, err)
		default:
			set = map[string]bool{}
			for _, r := range list.APIResources {
				set[r.Name] = true
			}
		}
		a.served[gv.String()] = set
	}
	return set[resource], nil
}

// ServerVersion returns the cluster's Kubernetes version as "major.minor". Some distributions
// report Minor as "33+" or leave it empty; gitVersion ("v1.33.13+abc") is the fallback.
func ServerVersion(disc discovery.DiscoveryInterface) (string, error) {
	v, err := disc.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("asking the server version: %w", err)
	}
	major, minor := strings.TrimSuffix(v.Major, "+"), strings.TrimSuffix(v.Minor, "+")
	if major != "" && minor != "" {
		return major + "." + minor, nil
	}
	parts := strings.SplitN(strings.TrimPrefix(v.GitVersion, "v"), ".", 3)
	if len(parts) >= 2 && parts[0] != "" && parts[1] != "" {
		return parts[0] + "." + parts[1], nil
	}
	return "", fmt.Errorf("cannot read a version from %+v", v)
}

// PodTemplateResources are the resources whose objects are pods or hold a pod template; ferry
// rewrites their image references and pull secrets at restore.
var PodTemplateResources = []string{
	"pods", "deployments.apps", "statefulsets.apps", "daemonsets.apps", "replicasets.apps",
	"replicationcontrollers", "jobs.batch", "cronjobs.batch", "deploymentconfigs.apps.openshift.io",
}
