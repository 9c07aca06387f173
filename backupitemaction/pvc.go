package backupitemaction

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/transfer"
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
	var pv *corev1.PersistentVolume
	if pvc.Spec.VolumeName != "" {
		pv, err = a.clients.Kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pv = nil
		} else if err != nil {
			return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: reading PV %s: %w", pvc.Namespace, pvc.Name, pvc.Spec.VolumeName, err)
		}
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
	if d.Action == keys.PVActionMove {
		log.Info("PVC will be moved: its PV definition travels with the backup, no data is copied")
		return u, nil, "", nil, nil
	}

	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s is a block volume; ferry copies filesystem volumes only (use %s=move on shared storage, or exclude it)", pvc.Namespace, pvc.Name, keys.PVAction)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pv == nil {
		log.Info("PVC is not bound: there is no data to copy; the restore creates it empty")
		return u, nil, "", nil, nil
	}

	targetNS, err := targetNamespace(backup, cfg, pvc.Namespace)
	if err != nil {
		return nil, nil, "", nil, err
	}
	req := &transfer.Request{
		ID:              string(backup.UID),
		Type:            mtype,
		TargetNamespace: targetNS,
		TargetName:      pvc.Name,
		StorageClass:    d.StorageClass,
		AccessModes:     d.AccessModes,
		Verify:          d.Verify,
		Backup:          backup.Name,
	}
	if req.ID == "" {
		return nil, nil, "", nil, fmt.Errorf("backup %s has no UID; cannot name a transfer for PVC %s/%s", backup.Name, pvc.Namespace, pvc.Name)
	}
	if err := sidecarRunning(ctx, a.clients); err != nil {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}

	reqAnn := req.Annotations()
	patch := map[string]any{}
	for k, v := range reqAnn {
		patch[k] = v
		ann[k] = v
	}
	patch[keys.TransferCancel] = nil // a stale cancel of an older ID must not linger
	delete(ann, keys.TransferCancel)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return nil, nil, "", nil, err
	}
	if _, err := a.clients.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return nil, nil, "", nil, fmt.Errorf("PVC %s/%s: writing the transfer request: %w", pvc.Namespace, pvc.Name, err)
	}
	u.SetAnnotations(ann)
	op := transfer.OperationID(pvc.Namespace, pvc.Name, req.ID)
	log.WithField("operationID", op).Infof("requested a %s transfer to %s/%s", req.Type, req.TargetNamespace, req.TargetName)
	return u, nil, op, nil, nil
}

// Progress reports the sidecar's status for the operation. "Not done yet" is never an error:
// Velero fails an operation for good on the first error Progress returns.
func (a *PVCAction) Progress(operationID string, backup *velerov1.Backup) (velero.OperationProgress, error) {
	ns, name, id, err := transfer.ParseOperationID(operationID)
	if err != nil {
		return velero.OperationProgress{}, biav2.InvalidOperationIDError(operationID)
	}
	ctx := context.Background()
	p := velero.OperationProgress{OperationUnits: "Bytes"}
	pvc, err := a.clients.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		p.Completed, p.Err = true, fmt.Sprintf("PVC %s/%s was deleted before its transfer finished", ns, name)
		return p, nil
	}
	if err != nil {
		// The API server may be briefly unreachable; ask again at the next poll.
		p.Description = fmt.Sprintf("cannot read PVC %s/%s yet: %v", ns, name, err)
		return p, nil
	}
	if cur := pvc.Annotations[keys.TransferID]; cur != id {
		p.Completed, p.Err = true, fmt.Sprintf("PVC %s/%s: transfer %s was replaced by transfer %q (another backup or a hand-written request)", ns, name, id, cur)
		return p, nil
	}
	st, err := transfer.ParseStatus(pvc.Annotations)
	if err != nil {
		p.Completed, p.Err = true, fmt.Sprintf("PVC %s/%s: %v", ns, name, err)
		return p, nil
	}
	if st == nil || st.ID != id {
		p.Description = "Waiting for ferry-datamover to pick up the transfer"
		if err := sidecarRunning(ctx, a.clients); err != nil {
			p.Completed, p.Err = true, err.Error()
		}
		return p, nil
	}
	return progressFromStatus(st, pvc), nil
}

// progressFromStatus maps the sidecar's status onto Velero's operation progress.
func progressFromStatus(st *transfer.Status, pvc *corev1.PersistentVolumeClaim) velero.OperationProgress {
	p := velero.OperationProgress{
		OperationUnits: "Bytes",
		NCompleted:     st.BytesDone,
		NTotal:         st.BytesTotal,
		Description:    describe(st),
	}
	if st.Started != nil {
		p.Started = st.Started.Time
	}
	if st.Updated != nil {
		p.Updated = st.Updated.Time
	}
	switch st.Phase {
	case transfer.PhaseCompleted:
		p.Completed = true
		if p.NTotal == 0 {
			p.NTotal = p.NCompleted
		}
	case transfer.PhaseFailed:
		p.Completed, p.Err = true, fmt.Sprintf("transfer of PVC %s/%s failed: %s", pvc.Namespace, pvc.Name, st.Message)
	case transfer.PhaseCancelled:
		p.Completed, p.Err = true, fmt.Sprintf("transfer of PVC %s/%s was cancelled", pvc.Namespace, pvc.Name)
	}
	return p
}

func describe(st *transfer.Status) string {
	s := string(st.Phase)
	if st.Phase == transfer.PhaseTransferring || st.Phase == transfer.PhaseCompleted {
		s += fmt.Sprintf(" %.0f%%", st.Percent)
		if st.RateBPS > 0 && st.Phase == transfer.PhaseTransferring {
			s += fmt.Sprintf(" at %s/s", units.Bytes(st.RateBPS))
		}
	}
	if st.Attempts > 1 {
		s += fmt.Sprintf(" (attempt %d)", st.Attempts)
	}
	if st.Target != "" {
		s += " (target " + st.Target + ")"
	}
	if st.Message != "" && !st.Phase.Terminal() {
		s += ": " + st.Message
	}
	return s
}

// Cancel asks the sidecar to stop the transfer; it cleans up and reports Cancelled.
func (a *PVCAction) Cancel(operationID string, backup *velerov1.Backup) error {
	ns, name, id, err := transfer.ParseOperationID(operationID)
	if err != nil {
		return biav2.InvalidOperationIDError(operationID)
	}
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.TransferCancel: id}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.clients.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("PVC %s/%s: asking ferry-datamover to cancel transfer %s: %w", ns, name, id, err)
	}
	a.log.WithFields(logrus.Fields{"namespace": ns, "name": name, "operationID": operationID}).Info("asked ferry-datamover to cancel the transfer")
	return nil
}
