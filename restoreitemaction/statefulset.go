package restoreitemaction

import (
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
)

// StatefulSetAction gives a migrated StatefulSet's volume claim templates the storage class and
// access modes its copied PVCs got (recorded at backup), so replicas added on the target get
// claims like them. Ordinary restores, and templates whose PVCs were moved, are untouched.
type StatefulSetAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*StatefulSetAction)(nil)

func NewStatefulSetAction(log logrus.FieldLogger) *StatefulSetAction {
	return &StatefulSetAction{log: log}
}

func (a *StatefulSetAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"statefulsets.apps"}}, nil
}

func (a *StatefulSetAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	record, err := operation.ParseClaimTemplates(from.GetAnnotations())
	if err != nil {
		return nil, fmt.Errorf("StatefulSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	if record == nil {
		return velero.NewRestoreItemActionExecuteOutput(u), nil
	}
	templates, _, _ := unstructured.NestedSlice(u.Object, "spec", "volumeClaimTemplates")
	for i, t := range templates {
		tm, _ := t.(map[string]any)
		name, _, _ := unstructured.NestedString(tm, "metadata", "name")
		choice, ok := record[name]
		if !ok {
			continue
		}
		if choice.StorageClass != nil {
			_ = unstructured.SetNestedField(tm, *choice.StorageClass, "spec", "storageClassName")
		} else {
			unstructured.RemoveNestedField(tm, "spec", "storageClassName")
		}
		if len(choice.AccessModes) > 0 {
			_ = unstructured.SetNestedStringSlice(tm, config.AccessModeStrings(choice.AccessModes), "spec", "accessModes")
		}
		templates[i] = tm
		a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName(), "template": name}).Info("claim template gets the copied PVCs' storage class and access modes")
	}
	if err := unstructured.SetNestedSlice(u.Object, templates, "spec", "volumeClaimTemplates"); err != nil {
		return nil, err
	}
	ann := u.GetAnnotations()
	delete(ann, keys.ClaimTemplates)
	u.SetAnnotations(ann)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
