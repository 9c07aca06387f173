package backupitemaction

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/requests"
)

// operations is what a v2 action needs to follow the requests it writes on live objects (PVCs
// or ImageStreams): Progress() and Cancel() are the same for both, only the object differs.
type operations struct {
	log     logrus.FieldLogger
	clients *kube.Clients
	keys    operation.Keys
	// units names what Progress counts ("Bytes", "Images").
	units string
	// annotations reads the live object's annotations.
	annotations func(ctx context.Context, namespace, name string) (map[string]string, error)
	// patch applies a JSON merge patch to the live object.
	patch func(ctx context.Context, namespace, name string, body []byte) error
	// fromStatus maps the sidecar's status annotation onto Velero's progress; (nil, nil) when
	// there is no status yet.
	fromStatus func(ann map[string]string, namespace, name string) (*velero.OperationProgress, operation.Status, error)
}

// request signs a request and writes its annotations on the live object with that uid.
func (o *operations) request(ctx context.Context, namespace, name string, uid types.UID, ann map[string]string) error {
	return requests.Write(ctx, o.clients, o.keys, uid, namespace, name, ann, time.Now(), func(ctx context.Context, body []byte) error {
		return o.patch(ctx, namespace, name, body)
	})
}

// Progress reports the sidecar's status for the operation. "Not done yet" is never an error:
// Velero fails an operation for good on the first error Progress returns.
func (o *operations) Progress(operationID string) (velero.OperationProgress, error) {
	ns, name, id, err := operation.ParseID(operationID)
	if err != nil {
		return velero.OperationProgress{}, biav2.InvalidOperationIDError(operationID)
	}
	ctx := context.Background()
	p := velero.OperationProgress{OperationUnits: o.units}
	object := fmt.Sprintf("%s %s/%s", o.keys.Kind, ns, name)
	ann, err := o.annotations(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		p.Completed, p.Err = true, fmt.Sprintf("%s was deleted before its %s finished", object, o.keys.Noun)
		return p, nil
	}
	if err != nil {
		// The API server may be briefly unreachable; ask again at the next poll.
		p.Description = fmt.Sprintf("cannot read %s yet: %v", object, err)
		return p, nil
	}
	if cur := ann[o.keys.ID]; cur != id {
		p.Completed, p.Err = true, fmt.Sprintf("%s: %s %s was replaced by %s %q (another backup or a hand-written request)", object, o.keys.Noun, id, o.keys.Noun, cur)
		return p, nil
	}
	got, st, err := o.fromStatus(ann, ns, name)
	if err != nil {
		p.Completed, p.Err = true, fmt.Sprintf("%s: %v", object, err)
		return p, nil
	}
	if got == nil || st.Head().ID != id {
		p.Description = "Waiting for ferry-datamover to pick up the " + o.keys.Noun
		if err := sidecarRunning(ctx, o.clients); err != nil {
			p.Completed, p.Err = true, err.Error()
		}
		return p, nil
	}
	got.OperationUnits = o.units
	return *got, nil
}

// Cancel asks the sidecar to stop the operation; it cleans up and reports Cancelled.
func (o *operations) Cancel(operationID string) error {
	ns, name, id, err := operation.ParseID(operationID)
	if err != nil {
		return biav2.InvalidOperationIDError(operationID)
	}
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{o.keys.Cancel: id}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = o.patch(ctx, ns, name, body)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s/%s: asking ferry-datamover to cancel %s %s: %w", o.keys.Kind, ns, name, o.keys.Noun, id, err)
	}
	o.log.WithFields(logrus.Fields{"namespace": ns, "name": name, "operationID": operationID}).Info("asked ferry-datamover to cancel the " + o.keys.Noun)
	return nil
}

// header fills the times and the terminal outcome every operation progress shares; what is the
// error's subject ("transfer of PVC app/data").
func header(p *velero.OperationProgress, h *operation.Header, what string) {
	if h.Started != nil {
		p.Started = h.Started.Time
	}
	if h.Updated != nil {
		p.Updated = h.Updated.Time
	}
	switch h.Phase {
	case operation.PhaseCompleted:
		p.Completed = true
	case operation.PhaseFailed:
		p.Completed, p.Err = true, fmt.Sprintf("%s failed: %s", what, h.Message)
	case operation.PhaseCancelled:
		p.Completed, p.Err = true, fmt.Sprintf("%s was cancelled", what)
	case operation.PhaseRefused:
		p.Completed, p.Err = true, fmt.Sprintf("%s was refused: %s", what, h.Message)
	}
}
