package volume

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/names"
	"github.com/ferry-dev/ferry/sidecar"
)

// endpoint is where the client reaches a transfer's server.
type endpoint struct {
	address string // host:port
	sni     string // TLS server name, for Route passthrough
}

// endpointService is the Service in front of a transfer's server pod.
func endpointService(n transferNames, namespace, id string, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: n.server, Labels: n.labels(id, "")},
		Spec: corev1.ServiceSpec{
			Type: typ,
			// By transfer too: a replaced transfer's server never answers for the newer one.
			Selector: map[string]string{keys.TransferPVC: n.hash, keys.TransferRole: RoleServer, keys.TransferIDLabel: names.Label(id)},
			Ports: []corev1.ServicePort{{
				Name: "rsync-tls", Protocol: corev1.ProtocolTCP,
				Port: dataplane.DefaultPort, TargetPort: intstr.FromInt32(dataplane.DefaultPort),
			}},
		},
	}
}

// routeHost is the host of a transfer's Route under subdomain. Its first label is at most 63
// characters however long the namespace is (long names end in a hash).
func routeHost(n transferNames, namespace, subdomain string) string {
	return names.Join(names.MaxLabel, "ferry", n.hash, namespace) + "." + subdomain
}

// ensureEndpoint creates what exposes the server pod, per cfg.EndpointType, and resolves its
// address. It returns (endpoint, "", nil) once resolved, and a non-empty wait reason while the
// address is not known yet.
func ensureEndpoint(ctx context.Context, t *kube.Clients, cfg *config.Config, namespace string, n transferNames, id string) (endpoint, string, error) {
	svcType := corev1.ServiceTypeClusterIP
	switch cfg.EndpointType {
	case config.EndpointLoadBalancer:
		svcType = corev1.ServiceTypeLoadBalancer
	case config.EndpointNodePort:
		svcType = corev1.ServiceTypeNodePort
	case config.EndpointRoute:
		ok, err := t.APIs.Has(kube.RouteGV, "routes")
		if err != nil {
			return endpoint{}, "", err
		}
		if !ok {
			return endpoint{}, "", sidecar.Permanent(fmt.Errorf("endpointType is Route but the target cluster (%s) has no OpenShift Route API; set endpointType to LoadBalancer, NodePort or ClusterIP in ferry-config", sidecar.Host(t)))
		}
	}
	svc, err := ensureService(ctx, t, endpointService(n, namespace, id, svcType))
	if err != nil {
		return endpoint{}, "", err
	}
	port := strconv.Itoa(dataplane.DefaultPort)
	switch cfg.EndpointType {
	case config.EndpointLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				return endpoint{address: net.JoinHostPort(in.IP, port)}, "", nil
			}
			if in.Hostname != "" {
				return endpoint{address: net.JoinHostPort(in.Hostname, port)}, "", nil
			}
		}
		return endpoint{}, fmt.Sprintf("waiting for LoadBalancer Service %s/%s to get an address", namespace, svc.Name), nil
	case config.EndpointNodePort:
		host := cfg.NodePortAddress
		if host == "" {
			if host, err = nodeAddress(ctx, t); err != nil {
				return endpoint{}, "", err
			}
		}
		if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].NodePort == 0 {
			return endpoint{}, "waiting for a node port", nil
		}
		return endpoint{address: net.JoinHostPort(host, strconv.Itoa(int(svc.Spec.Ports[0].NodePort)))}, "", nil
	case config.EndpointRoute:
		return ensureRoute(ctx, t, cfg, namespace, n, id)
	default:
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return endpoint{}, "waiting for a cluster IP", nil
		}
		return endpoint{address: net.JoinHostPort(svc.Spec.ClusterIP, port)}, "", nil
	}
}

// ensureService creates want, or replaces an existing one of another type (ferry-config
// changed) or for another transfer.
func ensureService(ctx context.Context, t *kube.Clients, want *corev1.Service) (*corev1.Service, error) {
	svcs := t.Kube.CoreV1().Services(want.Namespace)
	cur, err := svcs.Get(ctx, want.Name, metav1.GetOptions{})
	if err == nil && cur.Spec.Type == want.Spec.Type && equality.Semantic.DeepEqual(cur.Spec.Selector, want.Spec.Selector) {
		return cur, nil
	}
	if err == nil {
		if err := svcs.Delete(ctx, want.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("replacing Service %s/%s: %w", want.Namespace, want.Name, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Service %s/%s on the target: %w", want.Namespace, want.Name, err)
	}
	created, err := svcs.Create(ctx, want, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Service %s/%s on the target: %w", want.Namespace, want.Name, err)
	}
	return created, nil
}

var routeResource = kube.RouteGV.WithResource("routes")

// ensureRoute exposes the Service through an OpenShift Route with TLS passthrough: the router
// forwards the TLS stream by SNI, and the transfer's own certificates do the authentication.
func ensureRoute(ctx context.Context, t *kube.Clients, cfg *config.Config, namespace string, n transferNames, id string) (endpoint, string, error) {
	routes := t.Dynamic.Resource(routeResource).Namespace(namespace)
	r, err := routes.Get(ctx, n.server, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		spec := map[string]any{
			"to":   map[string]any{"kind": "Service", "name": n.server},
			"port": map[string]any{"targetPort": "rsync-tls"},
			"tls":  map[string]any{"termination": "passthrough"},
		}
		if cfg.RouteSubdomain != "" {
			spec["host"] = routeHost(n, namespace, cfg.RouteSubdomain)
		}
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": kube.RouteGV.String(), "kind": "Route", "spec": spec}}
		u.SetNamespace(namespace)
		u.SetName(n.server)
		u.SetLabels(n.labels(id, ""))
		if r, err = routes.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return endpoint{}, "", fmt.Errorf("creating Route %s/%s on the target: %w", namespace, n.server, err)
		}
	} else if err != nil {
		return endpoint{}, "", fmt.Errorf("reading Route %s/%s on the target: %w", namespace, n.server, err)
	}
	host, admitted := routeAdmitted(r)
	if !admitted {
		return endpoint{}, fmt.Sprintf("waiting for the target's router to admit Route %s/%s", namespace, n.server), nil
	}
	return endpoint{address: net.JoinHostPort(host, "443"), sni: host}, "", nil
}

// routeAdmitted returns the route's host once a router admitted it.
func routeAdmitted(r *unstructured.Unstructured) (string, bool) {
	ingress, _, _ := unstructured.NestedSlice(r.Object, "status", "ingress")
	for _, in := range ingress {
		im, _ := in.(map[string]any)
		host, _ := im["host"].(string)
		conds, _ := im["conditions"].([]any)
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			if cm["type"] == "Admitted" && cm["status"] == "True" && host != "" {
				return host, true
			}
		}
	}
	return "", false
}

// nodeAddress picks a Ready node's InternalIP (else ExternalIP) for NodePort endpoints.
func nodeAddress(ctx context.Context, t *kube.Clients) (string, error) {
	nodes, err := t.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing the target's nodes for a NodePort address (or set nodePortAddress in ferry-config): %w", err)
	}
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, node := range nodes.Items {
			if !nodeReady(&node) {
				continue
			}
			for _, a := range node.Status.Addresses {
				if a.Type == want && a.Address != "" {
					return a.Address, nil
				}
			}
		}
	}
	return "", sidecar.Permanent(fmt.Errorf("no Ready node of the target has an address for a NodePort endpoint; set nodePortAddress in ferry-config"))
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
