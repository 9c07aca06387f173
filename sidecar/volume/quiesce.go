package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/sidecar"
)

// quiesce scales down what uses the PVC (or, when the request says so, every workload of its
// namespace) and waits for the pods that mount the PVC to stop: those are what the copy must
// not race; the rest of the namespace stops alongside.
func (t *job) quiesce(ctx context.Context) (ctrl.Result, error) {
	done, err := quiesce.StopUsers(ctx, t.r.Source, t.pvc.Namespace, t.pvc.Name, t.req.ID, t.req.QuiesceNamespace)
	if len(done) > 0 && strings.Join(done, ",") != strings.Join(t.st.Quiesced, ",") {
		t.st.Quiesced = done
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "Quiesced", "scaled down %s (ferry-datamover rollback brings them back)", strings.Join(done, ", "))
	}
	if errors.Is(err, quiesce.ErrBarePod) {
		return ctrl.Result{}, sidecar.Permanent(err)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	pods, err := quiesce.PodsUsing(ctx, t.r.Source, t.pvc.Namespace, t.pvc.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(pods) > 0 {
		var n []string
		for _, p := range pods {
			n = append(n, p.Name)
		}
		return t.wait(ctx, fmt.Sprintf("waiting for %d pods using the PVC to stop: %s", len(pods), strings.Join(n, ", ")))
	}
	if t.req.Move {
		return t.finish(ctx, operation.PhaseCompleted, "")
	}
	return ctrl.Result{}, t.enter(ctx, operation.PhaseTransferring, "TransferStarted", "copying to "+t.st.Target+" through "+t.st.Endpoint)
}

// quiesceScope says what a final's quiesce stops, for its Events and status.
func (t *job) quiesceScope() string {
	if t.req.QuiesceNamespace {
		return "every workload in namespace " + t.pvc.Namespace
	}
	return "the workloads that use the PVC"
}
