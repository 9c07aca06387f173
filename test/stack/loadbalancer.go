package stack

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// loadBalancer is the stack's LoadBalancer stand-in with real nodes (what MetalLB or a cloud
// controller does in a real cluster, in a few lines): it gives each LoadBalancer Service without
// a loadBalancerClass an address of the cluster's LoadBalancer range and writes it into the
// Service's status. The stack's net namespace routes that range to the cluster's node, where
// kube-proxy's rules for the address take the traffic to the Service's endpoints. Nothing else
// (no health checks, no source ranges).
type loadBalancer struct {
	c      *Cluster
	free   []string
	mu     sync.Mutex
	used   map[string]string // address -> namespace/name
	cancel context.CancelFunc
	done   chan struct{}
	errs   []string
}

func (c *Cluster) startLoadBalancer(ctx context.Context) error {
	lb := &loadBalancer{c: c, free: c.stack.nodeAddrs.lbIPs(c.index), used: map[string]string{}, done: make(chan struct{})}
	runCtx, cancel := context.WithCancel(context.Background())
	lb.cancel = cancel
	factory := informers.NewSharedInformerFactory(c.Kube, 0)
	inf := factory.Core().V1().Services().Informer()
	queue := make(chan string, 1024)
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			queue <- key
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok {
				lb.release(svc)
			}
		},
	}); err != nil {
		cancel()
		return err
	}
	factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return fmt.Errorf("LoadBalancer stand-in: Service cache did not sync")
	}
	go func() {
		defer close(lb.done)
		for {
			select {
			case <-runCtx.Done():
				return
			case key := <-queue:
				obj, exists, err := inf.GetStore().GetByKey(key)
				if err != nil || !exists {
					continue
				}
				if err := lb.assign(runCtx, obj.(*corev1.Service)); err != nil && runCtx.Err() == nil {
					lb.mu.Lock()
					lb.errs = append(lb.errs, err.Error())
					lb.mu.Unlock()
					go func() { time.Sleep(time.Second); queue <- key }() // retry
				}
			}
		}
	}()
	c.lb = lb
	return nil
}

func (lb *loadBalancer) assign(ctx context.Context, svc *corev1.Service) error {
	key := svc.Namespace + "/" + svc.Name
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
		lb.release(svc)
		return nil
	}
	lb.mu.Lock()
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if lb.used[ing.IP] == key {
			lb.mu.Unlock()
			return nil
		}
	}
	if len(lb.free) == 0 {
		lb.mu.Unlock()
		return fmt.Errorf("LoadBalancer stand-in: no address left for %s", key)
	}
	ip := lb.free[0]
	lb.free = lb.free[1:]
	lb.used[ip] = key
	lb.mu.Unlock()
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if _, err := lb.c.Kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		lb.mu.Lock()
		delete(lb.used, ip)
		lb.free = append([]string{ip}, lb.free...)
		lb.mu.Unlock()
		return fmt.Errorf("LoadBalancer stand-in: status of %s: %w", key, err)
	}
	return nil
}

func (lb *loadBalancer) release(svc *corev1.Service) {
	key := svc.Namespace + "/" + svc.Name
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for ip, owner := range lb.used {
		if owner == key {
			delete(lb.used, ip)
			lb.free = append(lb.free, ip)
		}
	}
}

// Errors are failed status updates, for Stack.Problems.
func (lb *loadBalancer) Errors() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return append([]string(nil), lb.errs...)
}

func (lb *loadBalancer) stop() {
	lb.cancel()
	<-lb.done
}
