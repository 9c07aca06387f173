package podrunner

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilwait "k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// phase derives the pod phase from its containers, as kubelet does.
func (w *podWorker) phase() corev1.PodPhase {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phaseLocked()
}

func (w *podWorker) phaseLocked() corev1.PodPhase {
	if w.failReason != "" {
		return corev1.PodFailed
	}
	if !w.initialized {
		return corev1.PodPending
	}
	running, terminated, failed := 0, 0, 0
	for _, cr := range w.statuses {
		switch {
		case cr.state.Running != nil:
			running++
		case cr.state.Terminated != nil:
			terminated++
			if cr.state.Terminated.ExitCode != 0 {
				failed++
			}
		}
	}
	switch {
	case terminated == len(w.statuses) && w.finishedLocked():
		if failed > 0 {
			return corev1.PodFailed
		}
		return corev1.PodSucceeded
	case running > 0 || terminated > 0:
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// finishedLocked reports whether no container will be started again.
func (w *podWorker) finishedLocked() bool {
	if w.killed {
		return true
	}
	for _, cr := range w.statuses {
		t := cr.state.Terminated
		switch w.pod.Spec.RestartPolicy {
		case corev1.RestartPolicyNever:
		case corev1.RestartPolicyOnFailure:
			if t.ExitCode != 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// statusLocked builds the pod status from the worker's state.
func (w *podWorker) statusLocked() corev1.PodStatus {
	phase := w.phaseLocked()
	st := corev1.PodStatus{
		Phase:   phase,
		Reason:  w.failReason,
		Message: w.failMessage,
		HostIP:  w.r.opts.NodeIP,
		HostIPs: []corev1.HostIP{{IP: w.r.opts.NodeIP}},
	}
	if w.podIP != "" {
		st.PodIP, st.PodIPs = w.podIP, []corev1.PodIP{{IP: w.podIP}}
		st.StartTime = &w.startTime
	}
	allReady := len(w.statuses) > 0
	for _, cr := range w.initStatuses {
		st.InitContainerStatuses = append(st.InitContainerStatuses, w.containerStatusLocked(cr))
	}
	for _, cr := range w.statuses {
		st.ContainerStatuses = append(st.ContainerStatuses, w.containerStatusLocked(cr))
		allReady = allReady && cr.ready
	}
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.podIP != ""),
		cond(corev1.PodInitialized, w.initialized),
		cond(corev1.ContainersReady, allReady && phase == corev1.PodRunning),
		cond(corev1.PodReady, allReady && phase == corev1.PodRunning),
		cond(corev1.PodScheduled, true),
	}
	return st
}

func (w *podWorker) containerStatusLocked(cr *containerRun) corev1.ContainerStatus {
	started := cr.state.Running != nil
	cs := corev1.ContainerStatus{
		Name:                 cr.spec.Name,
		State:                *cr.state.DeepCopy(),
		LastTerminationState: *cr.lastState.DeepCopy(),
		Ready:                cr.ready,
		RestartCount:         cr.restarts,
		Image:                cr.spec.Image,
		ImageID:              cr.spec.Image,
		Started:              &started,
	}
	if len(cr.instances) > 0 {
		cs.ContainerID = w.containerID(cr.spec.Name, int32(len(cr.instances)-1))
	}
	return cs
}

// writeStatus writes the current status to the pod object (conditions of other writers, e.g.
// DisruptionTarget, are kept). Writes are serialised and each takes the state at its time, so
// the object never goes back to an older status.
func (w *podWorker) writeStatus(ctx context.Context) {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	pods := w.r.client.CoreV1().Pods(w.namespace)
	// As kubelet does, a write the API server could not take (stopped by a fault test, or too
	// loaded to finish a TLS handshake) is tried again; only an answer that says the status
	// itself is wrong is a problem of the stack.
	err := retry.OnError(statusBackoff, transient, func() error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			pod, err := pods.Get(ctx, w.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pod.UID != w.uid {
				return nil
			}
			w.mu.Lock()
			st := w.statusLocked()
			w.mu.Unlock()
			mine := map[corev1.PodConditionType]bool{}
			for i, c := range st.Conditions {
				mine[c.Type] = true
				for _, old := range pod.Status.Conditions {
					if old.Type == c.Type && old.Status == c.Status {
						st.Conditions[i].LastTransitionTime = old.LastTransitionTime
					}
				}
			}
			for _, old := range pod.Status.Conditions {
				if !mine[old.Type] {
					st.Conditions = append(st.Conditions, old)
				}
			}
			// The API server sets the QoS class at creation and never lets it change.
			st.QOSClass = pod.Status.QOSClass
			pod.Status = st
			_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			return err
		})
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		w.log.Error(err, "writing pod status")
		w.r.reportError(fmt.Errorf("writing the status of pod %s/%s: %w", w.namespace, w.name, err))
	}
	w.r.queue.Add(servicesKeyPrefix + w.namespace)
}

// statusBackoff spaces the tries of a status write over about two minutes: longer than the
// API server outages the fault tests cause.
var statusBackoff = utilwait.Backoff{Duration: time.Second, Factor: 1.5, Cap: 10 * time.Second, Steps: 18}

// transient reports whether a failed write may succeed later: anything but an answer about the
// object itself.
func transient(err error) bool {
	return !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
