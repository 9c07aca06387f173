package podrunner

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Queue keys: "pod/<ns>/<name>" for a pod, "services/<ns>" to re-publish a namespace's
// LoadBalancer Services.
const (
	podKeyPrefix      = "pod/"
	servicesKeyPrefix = "services/"
)

func (r *Runner) enqueuePod(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		r.queue.Add(podKeyPrefix + key)
	}
}

func (r *Runner) enqueueService(obj any) {
	if svc, ok := obj.(*corev1.Service); ok {
		r.queue.Add(servicesKeyPrefix + svc.Namespace)
	}
}

func (r *Runner) sync(ctx context.Context, key string) error {
	if ns, ok := strings.CutPrefix(key, servicesKeyPrefix); ok {
		return r.syncServices(ctx, ns)
	}
	ns, name, err := cache.SplitMetaNamespaceKey(strings.TrimPrefix(key, podKeyPrefix))
	if err != nil {
		return nil // not a key of ours; retrying would not help
	}
	pod, err := r.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return err
	}
	// A pod deleted and re-created under the same name is a new pod: the old one's processes go.
	for _, w := range r.workersNamed(ns, name) {
		if pod == nil || w.uid != pod.UID {
			r.retire(ctx, w, 0, false)
		}
	}
	if pod == nil {
		r.queue.Add(servicesKeyPrefix + ns)
		return nil
	}
	log := r.log.WithValues("pod", klogRef(pod))
	switch {
	case pod.Spec.NodeName == "":
		if pod.DeletionTimestamp != nil || !r.fits(pod) {
			return nil
		}
		return r.bind(ctx, pod)
	case pod.Spec.NodeName != r.opts.NodeName:
		return nil
	}
	w := r.worker(pod.UID)
	if pod.DeletionTimestamp != nil {
		if w == nil {
			return r.forceDelete(ctx, pod.Namespace, pod.Name, pod.UID)
		}
		r.retire(ctx, w, gracePeriod(pod), true)
		return nil
	}
	if w == nil && !isTerminal(pod.Status.Phase) {
		w = newPodWorker(r, pod)
		r.mu.Lock()
		r.workers[pod.UID] = w
		r.mu.Unlock()
		log.Info("starting pod", "ip", "pending")
		r.wg.Add(1)
		go func() { defer r.wg.Done(); w.run(ctx) }()
	}
	return nil
}

func (r *Runner) workersNamed(namespace, name string) []*podWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*podWorker
	for _, w := range r.workers {
		if w.namespace == namespace && w.name == name {
			out = append(out, w)
		}
	}
	return out
}

// retire stops a pod's processes (SIGTERM, SIGKILL after grace) and, once they are gone,
// forgets the pod: its address goes back to the pool, its volume files are removed and, if
// deleteObject, the pod object is removed as kubelet does at the end of a graceful deletion.
func (r *Runner) retire(ctx context.Context, w *podWorker, grace time.Duration, deleteObject bool) {
	if !w.startRetire() {
		w.kill(grace) // already retiring: a shorter grace period may have arrived
		return
	}
	w.kill(grace)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-w.done
		if deleteObject && ctx.Err() == nil {
			if err := r.forceDelete(ctx, w.namespace, w.name, w.uid); err != nil {
				w.log.Error(err, "removing the pod object")
			}
		}
		w.cleanup()
		r.ips.release(w.uid)
		r.mu.Lock()
		delete(r.workers, w.uid)
		r.mu.Unlock()
		r.queue.Add(servicesKeyPrefix + w.namespace)
	}()
}

// forceDelete removes a pod object whose processes are gone (grace 0, only that UID).
func (r *Runner) forceDelete(ctx context.Context, namespace, name string, uid types.UID) error {
	err := r.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// gracePeriod is the pod's deletion grace period (what the API server recorded), default 30s.
func gracePeriod(pod *corev1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// fits reports whether the pod's nodeSelector matches the Node's labels (the one scheduling
// rule ferry's pods use; affinity and taints are not evaluated).
func (r *Runner) fits(pod *corev1.Pod) bool {
	return labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(r.nodeLabels()))
}

// bind assigns the pod to the Node, as the scheduler would.
func (r *Runner) bind(ctx context.Context, pod *corev1.Pod) error {
	err := r.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: r.opts.NodeName},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or already bound; the next event tells
	}
	if err != nil {
		return fmt.Errorf("binding pod %s/%s to %s: %w", pod.Namespace, pod.Name, r.opts.NodeName, err)
	}
	return nil
}

func klogRef(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }
