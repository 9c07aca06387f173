package backupitemaction

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// PVAction records the move-or-copy decision on a migrated PV. For a move it first switches the
// live source PV to Retain (remembering the old policy in an annotation, which rollback puts
// back), so that deleting the source PVC later can never delete the data the target now uses;
// the backed-up PV says Retain too, so Velero restores it as is instead of re-provisioning it.
type PVAction struct {
	log     logrus.FieldLogger
	clients *kube.Clients
	config  func() (*config.Config, error)
}

var _ biav1.BackupItemAction = (*PVAction)(nil)

func NewPVAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *PVAction {
	return &PVAction{log: log, clients: clients, config: cfg}
}

func (a *PVAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumes"}}, nil
}

func (a *PVAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, error) {
	mtype, migrating, err := migrationType(backup)
	if err != nil || !migrating {
		return item, nil, err
	}
	var pv corev1.PersistentVolume
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.UnstructuredContent(), &pv); err != nil {
		return nil, nil, fmt.Errorf("decoding PV: %w", err)
	}
	if pv.Spec.ClaimRef == nil {
		return item, nil, nil
	}
	log := a.log.WithFields(logrus.Fields{"name": pv.Name, "claim": pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name, "backup": backup.Name})
	cfg, err := a.config()
	if err != nil {
		return nil, nil, fmt.Errorf("PV %s: %w", pv.Name, err)
	}
	ctx := context.Background()
	action := keys.PVActionCopy
	pvc, err := a.clients.Kube.CoreV1().PersistentVolumeClaims(pv.Spec.ClaimRef.Namespace).Get(ctx, pv.Spec.ClaimRef.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		log.Info("its PVC is gone; the PV is treated as copied and left untouched")
	case err != nil:
		return nil, nil, fmt.Errorf("PV %s: reading its PVC: %w", pv.Name, err)
	default:
		d, err := decide(pvc, &pv, cfg)
		if err != nil {
			// The PVC action reports this same error for the PVC; here nothing is touched.
			log.WithError(err).Warn("no move for this PV")
		} else {
			action = d.Action
		}
	}

	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[keys.PVAction] = action
	ann[keys.BackupMigration] = string(mtype)
	if action == keys.PVActionMove && pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		old := string(pv.Spec.PersistentVolumeReclaimPolicy)
		if err := a.retain(ctx, &pv, old); err != nil {
			return nil, nil, err
		}
		if _, ok := ann[keys.OriginalReclaimPolicy]; !ok {
			ann[keys.OriginalReclaimPolicy] = old
		}
		if err := unstructured.SetNestedField(u.Object, string(corev1.PersistentVolumeReclaimRetain), "spec", "persistentVolumeReclaimPolicy"); err != nil {
			return nil, nil, err
		}
		log.Infof("switched the live PV's reclaim policy from %s to Retain for the move (kept in %s)", old, keys.OriginalReclaimPolicy)
	}
	u.SetAnnotations(ann)
	return u, nil, nil
}

// retain switches the live PV to Retain. The original policy is recorded only once, so a second
// migration backup does not overwrite it with "Retain".
func (a *PVAction) retain(ctx context.Context, pv *corev1.PersistentVolume, old string) error {
	meta := map[string]any{"resourceVersion": pv.ResourceVersion}
	if _, ok := pv.Annotations[keys.OriginalReclaimPolicy]; !ok {
		meta["annotations"] = map[string]string{keys.OriginalReclaimPolicy: old}
	}
	body, err := json.Marshal(map[string]any{
		"metadata": meta,
		"spec":     map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
	})
	if err != nil {
		return err
	}
	if _, err := a.clients.Kube.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("PV %s: switching the live PV to Retain before the move: %w", pv.Name, err)
	}
	return nil
}
