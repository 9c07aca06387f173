package podrunner

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// syncServices publishes the namespace's selected LoadBalancer Services: ingress[0].ip is the
// address of the oldest running pod of this node the Service selects (none: no ingress, as a
// load balancer still being provisioned). There is no NAT, so the service port must be the
// container port.
func (r *Runner) syncServices(ctx context.Context, namespace string) error {
	svcs, err := r.services.Services(namespace).List(r.opts.Selector)
	if err != nil {
		return err
	}
	for _, svc := range svcs {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0 && p.TargetPort.IntVal != p.Port ||
				p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "" {
				r.log.Info("LoadBalancer port differs from its target port; the pod runner publishes the pod address without NAT, so clients must use the container port",
					"service", namespace+"/"+svc.Name, "port", p.Port, "targetPort", p.TargetPort.String())
			}
		}
		var ingress []corev1.LoadBalancerIngress
		if ip := r.selectedPodIP(namespace, labels.SelectorFromSet(svc.Spec.Selector)); ip != "" {
			ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		}
		if equality.Semantic.DeepEqual(ingress, svc.Status.LoadBalancer.Ingress) {
			continue
		}
		// The lister may not have seen our last write yet; the runner is the only writer of
		// these addresses, so what it wrote last is what the object holds.
		if last, ok := r.published.Load(svc.UID); ok && equality.Semantic.DeepEqual(last, ingress) {
			continue
		}
		upd := svc.DeepCopy()
		upd.Status.LoadBalancer.Ingress = ingress
		_, err := r.client.CoreV1().Services(namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("publishing LoadBalancer address of service %s/%s: %w", namespace, svc.Name, err)
		}
		r.published.Store(svc.UID, ingress)
		r.log.Info("LoadBalancer address published", "service", namespace+"/"+svc.Name, "ingress", ingress)
	}
	return nil
}

// selectedPodIP is the address of the oldest running pod in namespace matching sel, or "".
func (r *Runner) selectedPodIP(namespace string, sel labels.Selector) string {
	r.mu.Lock()
	var ws []*podWorker
	for _, w := range r.workers {
		if w.namespace == namespace && sel.Matches(labels.Set(w.pod.Labels)) {
			ws = append(ws, w)
		}
	}
	r.mu.Unlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].created.Before(ws[j].created) })
	for _, w := range ws {
		w.mu.Lock()
		ok := w.podIP != "" && !w.killed && w.phaseLocked() == corev1.PodRunning
		ip := w.podIP
		w.mu.Unlock()
		if ok {
			return ip
		}
	}
	return ""
}
