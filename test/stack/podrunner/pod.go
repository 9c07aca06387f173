package podrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podWorker runs one pod: it owns the pod's address, volume files, processes and status.
type podWorker struct {
	r               *Runner
	log             logr.Logger
	uid             types.UID
	namespace, name string
	created         time.Time
	pod             *corev1.Pod // as first seen: the parts of a pod spec the runner uses never change
	dir             string

	killCtx context.Context // ended by kill: containers stop
	cancel  context.CancelFunc
	done    chan struct{} // closed when every process of the pod is gone

	mu           sync.Mutex
	grace        time.Duration
	killed       bool
	retiring     bool
	podIP        string
	startTime    metav1.Time
	failReason   string // pod-level failure (bad spec): the pod is Failed with this reason
	failMessage  string
	initialized  bool
	initStatuses []*containerRun
	statuses     []*containerRun

	writeMu sync.Mutex // serialises status writes, so a newer status is never overwritten
}

// containerRun is the runtime state of one container of the pod.
type containerRun struct {
	spec      *corev1.Container
	init      bool
	restarts  int32
	state     corev1.ContainerState
	lastState corev1.ContainerState
	ready     bool
	instances []*instance // one per start, newest last (logs, previous=true)
	proc      *process    // the running process, nil when none
}

// instance is one start of a container: its log file and whether it still runs.
type instance struct {
	logPath string
	done    chan struct{}
}

func newPodWorker(r *Runner, pod *corev1.Pod) *podWorker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &podWorker{
		r:         r,
		log:       r.log.WithValues("pod", klogRef(pod)),
		uid:       pod.UID,
		namespace: pod.Namespace,
		name:      pod.Name,
		created:   pod.CreationTimestamp.Time,
		pod:       pod.DeepCopy(),
		dir:       filepath.Join(r.opts.Dir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		killCtx:   ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	for i := range w.pod.Spec.InitContainers {
		w.initStatuses = append(w.initStatuses, &containerRun{spec: &w.pod.Spec.InitContainers[i], init: true, state: waiting})
	}
	for i := range w.pod.Spec.Containers {
		w.statuses = append(w.statuses, &containerRun{spec: &w.pod.Spec.Containers[i], state: waiting})
	}
	return w
}

// errKilled ends work on a pod that is being deleted.
var errKilled = errors.New("pod is being deleted")

// permanentError is a problem with the pod spec itself: the pod fails instead of retrying.
type permanentError struct{ reason, msg string }

func (e *permanentError) Error() string { return e.msg }

func permanent(reason, format string, a ...any) error {
	return &permanentError{reason: reason, msg: fmt.Sprintf(format, a...)}
}

// run takes the pod from Pending to its end: address, volumes, init containers in order, then
// the containers side by side.
func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	ip, err := w.r.ips.allocate(w.uid)
	if err != nil {
		w.fail(ctx, "NoPodAddress", err.Error())
		return
	}
	w.mu.Lock()
	w.podIP, w.startTime = ip, metav1.Now()
	w.mu.Unlock()
	w.writeStatus(ctx)
	w.log.Info("pod address assigned", "ip", ip)

	if err := validateMounts(w.pod); err != nil {
		w.failWith(ctx, err)
		return
	}
	vols, err := w.prepareVolumes(ctx)
	if err != nil {
		w.failWith(ctx, err)
		return
	}
	for _, cr := range w.initStatuses {
		if !w.runInit(ctx, cr, vols) {
			w.writeStatus(ctx)
			return
		}
	}
	w.mu.Lock()
	w.initialized = true
	w.mu.Unlock()
	w.writeStatus(ctx)
	var wg sync.WaitGroup
	for _, cr := range w.statuses {
		wg.Add(1)
		go func() { defer wg.Done(); w.runRegular(ctx, cr, vols) }()
	}
	wg.Wait()
	w.writeStatus(ctx)
	w.log.Info("pod finished", "phase", w.phase())
}

// failWith fails the pod for a permanent error, or just stops for a kill.
func (w *podWorker) failWith(ctx context.Context, err error) {
	var perm *permanentError
	switch {
	case errors.As(err, &perm):
		w.fail(ctx, perm.reason, perm.msg)
	case errors.Is(err, errKilled):
		w.writeStatus(ctx)
	default:
		w.fail(ctx, "PodRunnerError", err.Error())
	}
}

func (w *podWorker) fail(ctx context.Context, reason, msg string) {
	w.log.Info("pod failed", "reason", reason, "message", msg)
	w.mu.Lock()
	w.failReason, w.failMessage = reason, msg
	w.mu.Unlock()
	w.writeStatus(ctx)
}

// runInit runs an init container until it succeeds; false means the pod cannot go on.
func (w *podWorker) runInit(ctx context.Context, cr *containerRun, vols map[string]string) bool {
	for attempt := 0; ; attempt++ {
		code, err := w.runContainer(ctx, cr, vols)
		if err != nil {
			var perm *permanentError
			if errors.As(err, &perm) {
				w.fail(ctx, perm.reason, perm.msg)
				return false
			}
			if errors.Is(err, errKilled) {
				return false
			}
		} else if code == 0 {
			return true
		} else if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			w.fail(ctx, "InitContainerFailed", fmt.Sprintf("init container %q exited with %d", cr.spec.Name, code))
			return false
		}
		if !w.backoff(ctx, cr, attempt) {
			return false
		}
	}
}

// runRegular runs a container, restarting it as the pod's restartPolicy says.
func (w *podWorker) runRegular(ctx context.Context, cr *containerRun, vols map[string]string) {
	for attempt := 0; ; attempt++ {
		code, err := w.runContainer(ctx, cr, vols)
		if err != nil {
			var perm *permanentError
			if errors.As(err, &perm) {
				w.fail(ctx, perm.reason, perm.msg)
				return
			}
			if errors.Is(err, errKilled) {
				return
			}
			// A config error (e.g. a Secret not there yet) is retried, as kubelet does.
		} else {
			if w.killCtx.Err() != nil {
				return
			}
			switch w.pod.Spec.RestartPolicy {
			case corev1.RestartPolicyNever:
				return
			case corev1.RestartPolicyOnFailure:
				if code == 0 {
					return
				}
			}
		}
		if !w.backoff(ctx, cr, attempt) {
			return
		}
	}
}

// backoff waits before a restart (1s doubling to 10s: kubelet's 10s…5m would make tests slow)
// and reports false if the pod is killed meanwhile.
func (w *podWorker) backoff(ctx context.Context, cr *containerRun, attempt int) bool {
	d := min(time.Second<<min(attempt, 4), 10*time.Second)
	w.mu.Lock()
	if cr.state.Terminated != nil {
		cr.lastState = cr.state
		cr.restarts++
		cr.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container %s", d, cr.spec.Name)}}
	}
	w.mu.Unlock()
	w.writeStatus(ctx)
	select {
	case <-w.killCtx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// kill stops the pod's containers: SIGTERM to each PID 1, SIGKILL to all of the pod after grace.
// A later call may shorten the grace period.
func (w *podWorker) kill(grace time.Duration) {
	w.mu.Lock()
	if !w.killed || grace < w.grace {
		w.grace = grace
	}
	w.killed = true
	w.mu.Unlock()
	w.cancel()
}

func (w *podWorker) currentGrace() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grace
}

// startRetire marks the worker as going away; false if it already was.
func (w *podWorker) startRetire() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retiring {
		return false
	}
	w.retiring = true
	return true
}

// cleanup removes the pod's volume files (Secret copies among them); logs stay for diagnosis.
func (w *podWorker) cleanup() {
	if err := os.RemoveAll(filepath.Join(w.dir, "volumes")); err != nil {
		w.log.Error(err, "removing volume files")
	}
}

// container finds a container (or init container) run by name.
func (w *podWorker) container(name string) *containerRun {
	for _, cr := range append(append([]*containerRun(nil), w.initStatuses...), w.statuses...) {
		if cr.spec.Name == name {
			return cr
		}
	}
	return nil
}

// address returns the pod's address ("" before it has one).
func (w *podWorker) address() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.podIP
}
