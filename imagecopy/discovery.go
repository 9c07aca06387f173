// Package imagecopy copies the images behind image streams from one registry to another, and
// finds a cluster's internal registry.
package imagecopy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/internal/kube"
)

// InternalRegistry returns the host (host[:port]) under which a cluster's internal registry
// appears in image references, or "" when the cluster has none (plain Kubernetes without an
// override). override, the ferry-config key internalRegistry, wins. The OpenShift 4 places are
// asked first, then OpenShift 3's docker-registry Service, then the openshift namespace's image
// streams. A cluster without an internal registry is an answer, not an error; errors are
// reserved for an API server that could not answer.
func InternalRegistry(ctx context.Context, c *kube.Clients, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	for _, find := range []func(context.Context, *kube.Clients) (string, error){
		fromImageConfig, fromAPIServerConfig, fromDockerRegistryService, fromOpenShiftImageStreams,
	} {
		host, err := find(ctx, c)
		if err != nil {
			return "", err
		}
		if host != "" {
			return host, nil
		}
	}
	return "", nil
}

// fromImageConfig reads images.config.openshift.io/cluster status.internalRegistryHostname
// (OpenShift 4; empty when the registry is removed).
func fromImageConfig(ctx context.Context, c *kube.Clients) (string, error) {
	u, err := imageConfig(ctx, c)
	if u == nil || err != nil {
		return "", err
	}
	host, _, _ := unstructured.NestedString(u.Object, "status", "internalRegistryHostname")
	return host, nil
}

// imageConfig reads images.config.openshift.io/cluster, OpenShift 4's image configuration; nil
// when the cluster has none (or this service account may not read it).
func imageConfig(ctx context.Context, c *kube.Clients) (*unstructured.Unstructured, error) {
	if ok, err := c.APIs.Has(kube.ConfigGV, "images"); err != nil || !ok {
		return nil, err
	}
	u, err := c.Dynamic.Resource(kube.ConfigGV.WithResource("images")).Get(ctx, "cluster", metav1.GetOptions{})
	if ignorable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading images.config.openshift.io/cluster: %w", err)
	}
	return u, nil
}

// fromAPIServerConfig reads ConfigMap openshift-apiserver/config (OpenShift 4, older path).
func fromAPIServerConfig(ctx context.Context, c *kube.Clients) (string, error) {
	if ok, err := c.APIs.Has(kube.ImageGV, "imagestreams"); err != nil || !ok {
		return "", err
	}
	cm, err := c.Kube.CoreV1().ConfigMaps("openshift-apiserver").Get(ctx, "config", metav1.GetOptions{})
	if ignorable(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading ConfigMap openshift-apiserver/config: %w", err)
	}
	var cfg struct {
		ImagePolicyConfig struct {
			InternalRegistryHostname string `json:"internalRegistryHostname"`
		} `json:"imagePolicyConfig"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		return "", nil // not ours to judge; the next place may know
	}
	return cfg.ImagePolicyConfig.InternalRegistryHostname, nil
}

// fromDockerRegistryService reads Service default/docker-registry (OpenShift 3), only on
// clusters serving the image API so a plain cluster's unrelated Service is never taken.
func fromDockerRegistryService(ctx context.Context, c *kube.Clients) (string, error) {
	if ok, err := c.APIs.Has(kube.ImageGV, "imagestreams"); err != nil || !ok {
		return "", err
	}
	svc, err := c.Kube.CoreV1().Services("default").Get(ctx, "docker-registry", metav1.GetOptions{})
	if ignorable(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Service default/docker-registry: %w", err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" || len(svc.Spec.Ports) == 0 {
		return "", nil
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))), nil
}

// fromOpenShiftImageStreams takes the registry host of an image stream in the openshift
// namespace (status.dockerImageRepository = host/namespace/name).
func fromOpenShiftImageStreams(ctx context.Context, c *kube.Clients) (string, error) {
	if ok, err := c.APIs.Has(kube.ImageGV, "imagestreams"); err != nil || !ok {
		return "", err
	}
	list, err := c.Dynamic.Resource(kube.ImageGV.WithResource("imagestreams")).Namespace("openshift").List(ctx, metav1.ListOptions{Limit: 5})
	if ignorable(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("listing image streams in namespace openshift: %w", err)
	}
	for _, is := range list.Items {
		repo, _, _ := unstructured.NestedString(is.Object, "status", "dockerImageRepository")
		if host, _, ok := strings.Cut(repo, "/"); ok && host != "" {
			return host, nil
		}
	}
	return "", nil
}

// ignorable: the object is absent, or this service account may not read it.
func ignorable(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err)
}
