package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/quiesce"
)

// UnquiesceAction brings a workload that ferry quiesced on the source back up on the target:
// the replica count, suspend flag or DaemonSet node selector remembered in its annotations is
// put back, and the annotations go.
type UnquiesceAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*UnquiesceAction)(nil)

func NewUnquiesceAction(log logrus.FieldLogger) *UnquiesceAction { return &UnquiesceAction{log: log} }

func (a *UnquiesceAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: quiesce.Resources()}, nil
}

func (a *UnquiesceAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	changed, err := quiesce.Unquiesce(u)
	if err != nil {
		return nil, err
	}
	if changed {
		a.log.WithFields(logrus.Fields{"kind": u.GetKind(), "namespace": u.GetNamespace(), "name": u.GetName()}).Info("restored as it was before ferry quiesced it on the source")
	}
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
