package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
)

// PVAction skips the PVs of copied PVCs: the target provisions its own and the data is copied
// into it. A moved PV is restored as is (Velero maps its claimRef namespace). Velero never hands
// a plugin a PV with the Delete policy and no snapshot: it re-provisions those itself, which is
// what a copy wants too.
type PVAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*PVAction)(nil)

func NewPVAction(log logrus.FieldLogger) *PVAction { return &PVAction{log: log} }

func (a *PVAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"persistentvolumes"}}, nil
}

func (a *PVAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.ItemFromBackup.(*unstructured.Unstructured)
	if !ok || u.GetAnnotations()[keys.PVAction] != keys.PVActionCopy {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	a.log.WithField("name", u.GetName()).Info("not restored: its PVC is copied into a volume the target provisions")
	return velero.NewRestoreItemActionExecuteOutput(input.Item).WithoutRestore(), nil
}
