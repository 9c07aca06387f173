package backupitemaction

import (
	"context"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/requests"
	"github.com/ferry-dev/ferry/internal/units"
)

// PVCAction decides per PVC whether a migration moves or copies it. For a copy it writes a
// transfer request on the live source PVC and returns an operation ID; the ferry-datamover
// sidecar does the copy and writes its status back on the PVC, which Progress() reads.
// Ordinary (non-migration) backups pass through untouched.
type PVCAction struct {
	log     logrus.FieldLogger
	clients *kube.Clients
	config  func() (*config.Config, error)
}

var _ biav2.BackupItemAction = (*PVCAction)(nil)

// NewPVCAction returns the action. cfg is read only for migration backups, so a broken
// ferry-config never affects ordinary backups.
func NewPVCAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *PVCAction {
	return &PVCAction{log: log, clients: clients, config: cfg}
}

// Name is required by the v2 interface; Velero uses the registered name instead.
func (a *PVCAction) Name() string { return "PVCAction" }

func (a *PVCAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumeclaims"}}, nil
}

func (a *PVCAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, string, []velero.ResourceIdentifier, error) {
	mtype, migrating, err := migrationType(backup)
	if err != nil || !migrating || finalizing(backup) {
		return item, nil, "", nil, err
	}
	var pvc corev1.PersistentVolumeClaim
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.UnstructuredContent(), &pvc); err != nil {
		return nil, nil, "", nil, fmt.Errorf("decoding PVC: %w", err)
	}
	log := a.log.WithFields(logrus.Fields{"namespace": pvc.Namespace, "name": pvc.Name, "backup": backup.Name})
	ctx := context.Background()

	cfg, err := a.config()
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	pv, err := boundPV(ctx, a.clients.Kube, &pvc)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	d, err := decide(&pvc, pv, cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	if d.Reason != "" {
		log.Info(d.Reason)
	}

	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[keys.PVAction] = d.Action
	ann[keys.BackupMigration] = string(mtype)
	u.SetAnnotations(ann)
	bound := pvc.Status.Phase == corev1.ClaimBound && pv != nil
	if d.Action == keys.PVActionMove {
		if mtype != operation.Final || !bound {
			log.Info("PVC will be moved: its PV definition travels with the backup, no data is copied")
			return u, nil, "", nil, nil
		}
		// The source app must stop writing to the shared volume before the target's starts on
		// it: a final asks the data mover to quiesce what uses the PVC, and copies nothing.
		targetNS, err := targetNamespace(backup, cfg, pvc.Namespace)
		if err != nil {
			return nil, nil, "", nil, err
		}
		wholeNS, err := quiesceNamespace(backup, cfg)
		if err != nil {
			return nil, nil, "", nil, err
		}
		req := &operation.TransferRequest{
			Request:          operation.Request{ID: string(backup.UID), TargetNamespace: targetNS, TargetName: pvc.Name, Backup: backup.Name},
			Type:             mtype,
			Move:             true,
			QuiesceNamespace: wholeNS,
		}
		log.Info("PVC will be moved: its PV definition travels with the backup; the final first quiesces what uses it")
		return a.request(ctx, log, &pvc, u, req)
	}

	if !bound {
		log.Info("PVC is not bound: there is no data to copy; the restore creates it empty")
		return u, nil, "", nil, nil
	}

	targetNS, err := targetNamespace(backup, cfg, pvc.Namespace)
	if err != nil {
		return nil, nil, "", nil, err
	}
	choice, err := operation.ResolveVolume(&pvc, cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	overwrite, err := allowOverwrite(backup, cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	wholeNS, err := quiesceNamespace(backup, cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	verify, err := verifyCopy(backup, choice, mtype)
	if err != nil {
		return nil, nil, "", nil, err
	}
	req := &operation.TransferRequest{
		Request:          operation.Request{ID: string(backup.UID), TargetNamespace: targetNS, TargetName: pvc.Name, Backup: backup.Name, Overwrite: overwrite},
		Type:             mtype,
		StorageClass:     choice.StorageClass,
		AccessModes:      choice.AccessModes,
		Verify:           &verify,
		QuiesceNamespace: wholeNS && mtype == operation.Final,
	}
	return a.request(ctx, log, &pvc, u, req)
}

// request writes req on the live PVC for the data mover and returns the backup item (u, with
// the request's annotations) and the operation's ID.
func (a *PVCAction) request(ctx context.Context, log logrus.FieldLogger, pvc *corev1.PersistentVolumeClaim, u *unstructured.Unstructured, req *operation.TransferRequest) (runtime.Unstructured, []velero.ResourceIdentifier, string, []velero.ResourceIdentifier, error) {
	if req.ID == "" {
		return nil, nil, "", nil, fmt.Errorf("backup %s has no UID; cannot name a transfer for PVC %s/%s", req.Backup, pvc.Namespace, pvc.Name)
	}
	if err := sidecarRunning(ctx, a.clients); err != nil {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	if err := finalRunning(ctx, a.clients, pvc, req); err != nil {
		return nil, nil, "", nil, err
	}
	reqAnn := req.Annotations()
	if err := a.operations().request(ctx, pvc.Namespace, pvc.Name, pvc.UID, reqAnn); err != nil {
		return nil, nil, "", nil, err
	}
	ann := u.GetAnnotations()
	for k, v := range reqAnn {
		ann[k] = v
	}
	delete(ann, keys.TransferCancel)
	u.SetAnnotations(ann)
	op := operation.ID(pvc.Namespace, pvc.Name, req.ID)
	if req.Move {
		log.WithField("operationID", op).Info("requested the quiesce of what uses the PVC before its volume moves")
	} else {
		log.WithField("operationID", op).Infof("requested a %s transfer to %s/%s", req.Type, req.TargetNamespace, req.TargetName)
	}
	return u, nil, op, nil, nil
}

// finalRunning refuses a stage while a final transfer of the PVC is under way.
func finalRunning(ctx context.Context, clients *kube.Clients, pvc *corev1.PersistentVolumeClaim, req *operation.TransferRequest) error {
	live, err := clients.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, pvc.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return requests.FinalUnderWay(live, req)
}

// operations follows the transfers this action requested.
func (a *PVCAction) operations() *operations {
	pvcs := func(ns string) typedcorev1.PersistentVolumeClaimInterface {
		return a.clients.Kube.CoreV1().PersistentVolumeClaims(ns)
	}
	return &operations{
		log: a.log, clients: a.clients, keys: operation.TransferKeys, units: "Bytes",
		annotations: func(ctx context.Context, ns, name string) (map[string]string, error) {
			pvc, err := pvcs(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return pvc.Annotations, nil
		},
		patch: func(ctx context.Context, ns, name string, body []byte) error {
			_, err := pvcs(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
			return err
		},
		fromStatus: func(ann map[string]string, ns, name string) (*velero.OperationProgress, operation.Status, error) {
			st, err := operation.ParseTransferStatus(ann)
			if st == nil || err != nil {
				return nil, nil, err
			}
			p := transferProgress(st, ns, name)
			return &p, st, nil
		},
	}
}

// Progress reports the sidecar's status for the transfer.
func (a *PVCAction) Progress(operationID string, _ *velerov1.Backup) (velero.OperationProgress, error) {
	return a.operations().Progress(operationID)
}

// Cancel asks the sidecar to stop the transfer; it cleans up and reports Cancelled.
func (a *PVCAction) Cancel(operationID string, _ *velerov1.Backup) error {
	return a.operations().Cancel(operationID)
}

// transferProgress maps the sidecar's status onto Velero's operation progress.
func transferProgress(st *operation.TransferStatus, ns, name string) velero.OperationProgress {
	p := velero.OperationProgress{NCompleted: st.BytesDone, NTotal: st.BytesTotal, Description: describe(st)}
	header(&p, &st.Header, fmt.Sprintf("transfer of PVC %s/%s", ns, name))
	if st.Phase == operation.PhaseCompleted && p.NTotal == 0 {
		p.NTotal = p.NCompleted
	}
	return p
}

// verified sums up the verify pass of a completed transfer, or the differences that failed one.
func verified(st *operation.TransferStatus) string {
	v := st.Verified
	switch {
	case v == nil:
		return ""
	case st.Phase == operation.PhaseCompleted && v.Mismatches == 0:
		s := fmt.Sprintf("verified: %d files, %s compared, no mismatch", v.Files, units.Bytes(v.Bytes))
		if v.Repaired > 0 {
			s += fmt.Sprintf(" (%d found after the first copy, copied again by content)", v.Repaired)
		}
		return s
	case st.Phase == operation.PhaseFailed && v.Mismatches > 0:
		return fmt.Sprintf("verification: %d mismatch(es) in %d files compared: %s", v.Mismatches, v.Files, strings.Join(v.First, ", "))
	}
	return ""
}

func describe(st *operation.TransferStatus) string {
	s := string(st.Phase)
	if st.Phase == operation.PhaseTransferring || st.Phase == operation.PhaseCompleted {
		s += fmt.Sprintf(" %.0f%%", st.Percent)
		if st.RateBPS > 0 && st.Phase == operation.PhaseTransferring {
			s += fmt.Sprintf(" at %s/s", units.Bytes(st.RateBPS))
		}
		if eta := st.ETA(); eta > 0 {
			s += fmt.Sprintf(", about %s left", eta)
		}
		if st.Verifying > 0 && st.Phase == operation.PhaseTransferring {
			s += fmt.Sprintf(", verifying %.0f%%", st.Verifying)
		}
	}
	if st.Attempts > 1 {
		s += fmt.Sprintf(" (attempt %d)", st.Attempts)
	}
	if st.Target != "" {
		s += " (target " + st.Target + ")"
	}
	if v := verified(st); v != "" {
		s += ", " + v
	}
	if st.Message != "" && !st.Phase.Terminal() {
		s += ": " + st.Message
	}
	return s
}
