package volume

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/sidecar"
)

// maxClientAttempts: client pods per transfer; `send` itself also retries within each.
const maxClientAttempts = 3

// sendData runs client pods until one succeeds or the attempts are spent, reporting progress.
func (t *job) sendData(ctx context.Context) (ctrl.Result, error) {
	tc, err := t.r.Target(ctx, t.cfg)
	if err != nil {
		return ctrl.Result{}, err
	}
	pods, err := t.clientPods(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var latest *corev1.Pod
	attempt := 0
	for i := range pods {
		if a, _ := strconv.Atoi(pods[i].Labels[keys.TransferAttempt]); a > attempt {
			attempt, latest = a, &pods[i]
		}
	}
	if latest != nil && latest.Status.Phase == corev1.PodSucceeded {
		return t.endPass(ctx, tc, latest, attempt)
	}
	var running *corev1.Pod
	if latest != nil && (latest.Status.Phase == corev1.PodRunning || latest.Status.Phase == corev1.PodPending) {
		running = latest
	}
	server, err := t.ensureServer(ctx, tc, running)
	if err != nil {
		return ctrl.Result{}, err
	}
	if running == nil && (latest == nil || latest.Status.Phase == corev1.PodFailed) {
		// The next client needs a server that answers where the endpoint says: started
		// sooner (a server pod replaced, its address not published yet), it would only spend
		// an attempt on connections that cannot work. The ended one is judged after.
		if waiting, err := t.serverWaiting(ctx, tc, server); err != nil || waiting != "" {
			if err != nil {
				return ctrl.Result{}, err
			}
			return t.waitForServer(ctx, server, waiting)
		}
	}
	if running != nil {
		// The running client cannot reach a moved endpoint any more; the next one can.
		if moved := t.movedEndpoint(ctx, tc); moved != "" {
			if err := t.r.Source.Kube.CoreV1().Pods(running.Namespace).Delete(ctx, running.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
			return t.retry(ctx, tc, latest, attempt, fmt.Sprintf("the endpoint moved from %s to %s", t.st.Endpoint, moved))
		}
	}
	now := t.r.Clock.Now()
	var why string // why the latest client pod is done for without finishing
	switch {
	case latest == nil:
	case latest.Status.Phase == corev1.PodFailed:
		transferFailures.WithLabelValues(RoleClient).Inc()
		t.observe(ctx, latest) // its retries count too
		var v *dataplane.Verification
		why, v = t.outcome(ctx, latest)
		if (v != nil && v.Mismatches > 0) || exitCode(latest, SendContainer) == dataplane.ExitVerifyFailed {
			// send copies by content after a verify pass found differences and failed only
			// because the next verify pass found some again: another pod would do the same.
			if v != nil {
				t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferVerifyFailed", "the target differs from the source in %d place(s) of %d files compared: %s",
					v.Mismatches, v.Files, v.Summary(operation.MaxVerifiedPaths))
			} else {
				t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferVerifyFailed", "the target differs from the source: %s", why)
			}
			return t.finish(ctx, operation.PhaseFailed, why)
		}
	default:
		moved := progress(t.st)
		t.observe(ctx, latest)
		switch latest.Status.Phase {
		case corev1.PodPending:
			// Time spent waiting to run is prepareTimeout's, not a stall.
			t.st.Progressed = operation.NewTime(now)
			if waited := now.Sub(latest.CreationTimestamp.Time); !latest.CreationTimestamp.IsZero() && waited > t.cfg.PrepareTimeout {
				return t.finish(ctx, operation.PhaseFailed, fmt.Sprintf("client pod %s did not start within %s (prepareTimeout): %s", latest.Name, t.cfg.PrepareTimeout, podState(latest)))
			}
			t.st.Message = "client pod " + latest.Name + ": " + podState(latest)
			return ctrl.Result{RequeueAfter: sidecar.Poll}, t.writeStatus(ctx)
		}
		if t.st.Progressed == nil || progress(t.st) != moved {
			t.st.Progressed = operation.NewTime(now)
		}
		stalled := now.Sub(t.st.Progressed.Time)
		if stalled <= t.cfg.StallTimeout {
			t.st.Message = ""
			return ctrl.Result{RequeueAfter: sidecar.Poll}, t.writeStatus(ctx)
		}
		// No bytes and no files for too long: this pod is done for, another one starts.
		why = fmt.Sprintf("no progress for %s (stallTimeout %s)", stalled.Round(time.Second), t.cfg.StallTimeout)
		transferFailures.WithLabelValues(RoleClient).Inc()
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferStalled", "client pod %s made no progress for %s; stopping it", latest.Name, stalled.Round(time.Second))
		if err := t.r.Source.Kube.CoreV1().Pods(latest.Namespace).Delete(ctx, latest.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	return t.retry(ctx, tc, latest, attempt, why)
}

// retry starts the next client pod after the latest (nil: none yet) ended without finishing
// the pass, for the reason why, or fails the transfer once the attempts are spent.
func (t *job) retry(ctx context.Context, tc *kube.Clients, latest *corev1.Pod, attempt int, why string) (ctrl.Result, error) {
	if latest != nil {
		if attempt >= maxClientAttempts {
			return t.finish(ctx, operation.PhaseFailed, fmt.Sprintf("%d attempts failed; the last: %s", attempt, why))
		}
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferAttemptFailed", "attempt %d failed: %s", attempt, why)
	}
	return ctrl.Result{RequeueAfter: sidecar.Poll}, t.startClient(ctx, tc, attempt+1)
}

// endPass completes the transfer once the client has succeeded and the server has ended well
// too: after the client's last rsync a server that is not root restores the exact targets of
// the symlinks it stored munged, then flushes the target, and only its exit 0 says the target
// is the source's copy. A server that fails, vanishes or does not end within stallTimeout makes
// the attempt a failed one; the next pass repeats the (cheap) delta and ends it properly.
func (t *job) endPass(ctx context.Context, tc *kube.Clients, client *corev1.Pod, attempt int) (ctrl.Result, error) {
	t.observe(ctx, client)
	server, err := t.serverPod(ctx, tc)
	if err != nil {
		return ctrl.Result{}, err
	}
	var why string
	switch {
	case server == nil:
		why = "the server pod was gone before it finished the pass"
	case server.Status.Phase == corev1.PodSucceeded:
		t.st.Percent = 100
		// The done report's note (device files skipped) stays in the completed status.
		return t.finish(ctx, operation.PhaseCompleted, t.st.Message)
	case server.Status.Phase == corev1.PodFailed:
		why = fmt.Sprintf("server pod %s failed after the client finished: %s", server.Name, podState(server))
	default:
		ended := endedAt(client, SendContainer) // else when the copy last moved
		if ended.IsZero() && t.st.Progressed != nil {
			ended = t.st.Progressed.Time
		}
		if waited := t.r.Clock.Now().Sub(ended); ended.IsZero() || waited <= t.cfg.StallTimeout {
			t.st.Message = "the client is done; the server finishes the pass"
			return ctrl.Result{RequeueAfter: time.Second}, t.writeStatus(ctx)
		}
		why = fmt.Sprintf("server pod %s did not finish the pass within %s (stallTimeout) of the client", server.Name, t.cfg.StallTimeout)
		if err := tc.Kube.CoreV1().Pods(server.Namespace).Delete(ctx, server.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	transferFailures.WithLabelValues(RoleServer).Inc()
	if attempt < maxClientAttempts {
		// The next client needs a server: this one ended, is gone or is going.
		if _, err := t.ensureServer(ctx, tc, nil); err != nil {
			return ctrl.Result{}, err
		}
	}
	return t.retry(ctx, tc, client, attempt, why)
}

// serverWaiting says why no client can start yet: the server pod is not ready, or the
// endpoint has no address. "" when both are.
func (t *job) serverWaiting(ctx context.Context, tc *kube.Clients, server *corev1.Pod) (string, error) {
	if !podReady(server) {
		return fmt.Sprintf("waiting for server pod %s/%s: %s", server.Namespace, server.Name, podState(server)), nil
	}
	_, waiting, err := ensureEndpoint(ctx, tc, t.cfg, t.req.TargetNamespace, t.names, t.req.ID)
	return waiting, err
}

// waitForServer waits for a replaced server as Preparing waits for the first one, up to
// prepareTimeout from the server pod's creation.
func (t *job) waitForServer(ctx context.Context, server *corev1.Pod, why string) (ctrl.Result, error) {
	if waited := t.r.Clock.Now().Sub(server.CreationTimestamp.Time); !server.CreationTimestamp.IsZero() && waited > t.cfg.PrepareTimeout {
		return t.finish(ctx, operation.PhaseFailed, fmt.Sprintf("server pod %s/%s was not serving within %s (prepareTimeout): %s", server.Namespace, server.Name, t.cfg.PrepareTimeout, why))
	}
	t.st.Message = why
	t.st.Progressed = operation.NewTime(t.r.Clock.Now())
	return ctrl.Result{RequeueAfter: sidecar.Poll}, t.writeStatus(ctx)
}

// movedEndpoint asks for the endpoint again and returns its address when it is no longer the
// status's: it moves with a new server pod where the address is the pod's, or a Route admitted
// anew. "" when it stayed or is not resolved yet (the last one is kept).
func (t *job) movedEndpoint(ctx context.Context, tc *kube.Clients) string {
	ep, waiting, err := ensureEndpoint(ctx, tc, t.cfg, t.req.TargetNamespace, t.names, t.req.ID)
	if err != nil || waiting != "" || ep.address == t.st.Endpoint {
		return ""
	}
	return ep.address
}

// progress is what moves while a copy makes headway: bytes, the share of the volume checked
// (files compared count even when nothing needs sending), and the verify pass's share.
func progress(st *operation.TransferStatus) [3]float64 {
	return [3]float64{float64(st.BytesDone), st.Percent, st.Verifying}
}

func (t *job) clientPods(ctx context.Context) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(t.names.labels(t.req.ID, RoleClient)).String()
	list, err := t.r.Source.Kube.CoreV1().Pods(t.pvc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing client pods: %w", err)
	}
	return list.Items, nil
}

// startClient creates client pod number attempt, next to the app for a ReadWriteOnce volume
// that is mounted (a stage pass while the app runs).
func (t *job) startClient(ctx context.Context, tc *kube.Clients, attempt int) error {
	node := ""
	if t.req.Type == operation.Stage {
		pods, err := quiesce.PodsUsing(ctx, t.r.Source, t.pvc.Namespace, t.pvc.Name)
		if err != nil {
			return err
		}
		for _, m := range t.pvc.Spec.AccessModes {
			if m == corev1.ReadWriteOncePod && len(pods) > 0 {
				return sidecar.Permanent(fmt.Errorf("the PVC is ReadWriteOncePod and pod %s uses it: only a final transfer (after quiesce) can read it", pods[0].Name))
			}
		}
		if !hasMode(t.pvc, corev1.ReadWriteMany) && !hasMode(t.pvc, corev1.ReadOnlyMany) {
			node = nodeOf(pods)
		}
	}
	if moved := t.movedEndpoint(ctx, tc); moved != "" {
		t.log.Info("the endpoint moved", "from", t.st.Endpoint, "to", moved)
		t.st.Endpoint = moved
	}
	ep := endpoint{address: t.st.Endpoint}
	if t.cfg.EndpointType == config.EndpointRoute {
		host, _, _ := strings.Cut(t.st.Endpoint, ":")
		ep.sni = host
	}
	// Right before the pod (here and for the server): another PVC's transfer ending in this
	// namespace removes the service account, and a pod naming a missing one is Forbidden.
	if err := ensureTransferServiceAccount(ctx, t.r.Source.Kube, t.r.Source.APIs, t.pvc.Namespace); err != nil {
		return err
	}
	if attempt > 1 {
		if err := t.renewCertsIfExpiring(ctx, tc); err != nil {
			return err
		}
	}
	pod := clientPod(t.names, t.pvc, t.req, t.cfg, ep, attempt, node)
	if _, err := t.r.Pods.Create(ctx, t.r.Source.Kube, pod); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return sidecar.Permanent(fmt.Errorf("creating the client pod: %w", err))
		}
		return fmt.Errorf("creating the client pod: %w", err)
	}
	if attempt > t.st.Attempts {
		t.st.Attempts = attempt
	}
	t.st.Progressed = operation.NewTime(t.r.Clock.Now())
	return t.writeStatus(ctx)
}

func hasMode(pvc *corev1.PersistentVolumeClaim, m corev1.PersistentVolumeAccessMode) bool {
	for _, have := range pvc.Spec.AccessModes {
		if have == m {
			return true
		}
	}
	return false
}

// observe folds the client's reports (the JSON lines `send --progress=json` prints) into the
// status.
func (t *job) observe(ctx context.Context, pod *corev1.Pod) {
	for _, r := range t.reports(ctx, pod) {
		applyReport(t.st, r, podAttempt(pod))
	}
}

// outcome explains how a failed client pod ended: send's error report (with the verify pass's
// differences when they were the failure), else the termination message kubelet kept.
func (t *job) outcome(ctx context.Context, pod *corev1.Pod) (string, *dataplane.Verification) {
	for _, r := range t.reports(ctx, pod) {
		if r.Type == dataplane.ReportError && r.Error != "" {
			return r.Error, r.Verified
		}
	}
	return podState(pod), nil
}

// reports returns what the client pod reported so far, oldest first; nothing while its log
// cannot be read yet.
func (t *job) reports(ctx context.Context, pod *corev1.Pod) []dataplane.Report {
	reports, err := t.r.Pods.Reports(ctx, t.r.Source.Kube, pod)
	if err != nil {
		t.log.V(1).Info("cannot read the client log yet", "pod", pod.Name, "error", err.Error())
	}
	return reports
}

func podAttempt(p *corev1.Pod) int {
	a, _ := strconv.Atoi(p.Labels[keys.TransferAttempt])
	return a
}

// nodeOf returns the node of a running pod that mounts the PVC, where a ReadWriteOnce volume
// can be mounted a second time, or "" when none runs.
func nodeOf(pods []corev1.Pod) string {
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			return p.Spec.NodeName
		}
	}
	return ""
}
