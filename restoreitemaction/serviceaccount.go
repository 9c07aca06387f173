package restoreitemaction

import (
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ServiceAccountAction drops references to the pull secrets OpenShift generated for the service
// account on the source ("<name>-dockercfg-…"): they hold source-cluster tokens, the secrets
// themselves are not restored, and the target generates new ones. Velero itself drops the
// "<name>-token-…" references and merges into service accounts that already exist.
type ServiceAccountAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*ServiceAccountAction)(nil)

func NewServiceAccountAction(log logrus.FieldLogger) *ServiceAccountAction {
	return &ServiceAccountAction{log: log}
}

func (a *ServiceAccountAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"serviceaccounts"}}, nil
}

func (a *ServiceAccountAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	prefix := u.GetName() + "-dockercfg-"
	var dropped []string
	for _, field := range []string{"secrets", "imagePullSecrets"} {
		list, found, _ := unstructured.NestedSlice(u.Object, field)
		if !found {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, e := range list {
			name, _ := e.(map[string]any)["name"].(string)
			if strings.HasPrefix(name, prefix) {
				dropped = append(dropped, name)
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) == 0 {
			unstructured.RemoveNestedField(u.Object, field)
		} else if err := unstructured.SetNestedSlice(u.Object, kept, field); err != nil {
			return nil, err
		}
	}
	if len(dropped) > 0 {
		a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()}).Infof("dropped the source's generated pull secrets %v", dropped)
	}
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
