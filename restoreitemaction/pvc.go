package restoreitemaction

import (
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// PVCAction restores a migrated PVC as the backup decided:
//   - copy: the target storage class and access modes recorded at backup, no selector, no
//     volumeName and no dataSource (they name source-cluster objects), so the target provisions
//     its own volume; normally the sidecar already created this PVC with the data in it and
//     Velero leaves the existing one alone;
//   - move: as is, bound to the moved PV;
//   - ordinary backups: untouched.
//
// The transfer request and status stay behind on the source. Velero's own PVC action already
// strips bind annotations and volume.kubernetes.io/selected-node, and restores the PV.
type PVCAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*PVCAction)(nil)

func NewPVCAction(log logrus.FieldLogger) *PVCAction { return &PVCAction{log: log} }

func (a *PVCAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumeclaims"}}, nil
}

func (a *PVCAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	ann := from.GetAnnotations()
	action := ann[keys.PVAction]
	id := u.GetNamespace() + "/" + u.GetName()
	log := a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()})
	switch action {
	case "":
		return velero.NewRestoreItemActionExecuteOutput(u), nil
	case keys.PVActionMove:
		log.Info("restored as is: its PV was moved")
	case keys.PVActionCopy:
		if err := a.copied(u, ann, namespaceMapping(input), log); err != nil {
			return nil, fmt.Errorf("PVC %s: %w", id, err)
		}
	default:
		return nil, fmt.Errorf("PVC %s: annotation %s=%q in the backup: want %q or %q", id, keys.PVAction, action, keys.PVActionCopy, keys.PVActionMove)
	}
	cur := u.GetAnnotations()
	for k := range cur {
		if keys.IsTransferKey(k) || k == keys.BackupMigration {
			delete(cur, k)
		}
	}
	u.SetAnnotations(cur)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}

func (a *PVCAction) copied(u *unstructured.Unstructured, ann, nsMap map[string]string, log logrus.FieldLogger) error {
	if target, ok := ann[keys.TransferTarget]; ok {
		restoredTo := mapNamespace(nsMap, u.GetNamespace()) + "/" + u.GetName()
		if target != restoredTo {
			ns, _, _ := strings.Cut(target, "/")
			return fmt.Errorf("its data was copied to %s but this restore puts it in %s; restore with --namespace-mappings %s:%s (the mapping the backup used)",
				target, restoredTo, u.GetNamespace(), ns)
		}
	}
	if sc, ok := ann[keys.TransferStorageClass]; ok {
		if err := unstructured.SetNestedField(u.Object, sc, "spec", "storageClassName"); err != nil {
			return err
		}
		if cur := u.GetAnnotations(); cur[keys.BetaStorageClassAnnotation] != "" {
			cur[keys.BetaStorageClassAnnotation] = sc
			u.SetAnnotations(cur)
		}
	}
	if v, ok := ann[keys.TransferAccessModes]; ok {
		modes, err := config.ParseAccessModes(v)
		if err != nil {
			return fmt.Errorf("annotation %s in the backup: %w", keys.TransferAccessModes, err)
		}
		list := make([]any, len(modes))
		for i, m := range modes {
			list[i] = string(m)
		}
		if err := unstructured.SetNestedSlice(u.Object, list, "spec", "accessModes"); err != nil {
			return err
		}
	}
	for _, f := range []string{"selector", "volumeName", "dataSource", "dataSourceRef"} {
		unstructured.RemoveNestedField(u.Object, "spec", f)
	}
	log.Info("restored as a copy: the target provisions its own volume")
	return nil
}
