package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
)

// RouteAction removes the host of a Route whose host the source router generated, so the
// target's router generates one under its own apps domain. A host the user chose is kept. The
// field is removed rather than set to "": the Route schema's host pattern rejects an empty string.
type RouteAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*RouteAction)(nil)

func NewRouteAction(log logrus.FieldLogger) *RouteAction { return &RouteAction{log: log} }

func (a *RouteAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"routes.route.openshift.io"}}, nil
}

func (a *RouteAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	if !ok || u.GetAnnotations()[keys.RouteHostGenerated] != "true" {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	host, _, _ := unstructured.NestedString(u.Object, "spec", "host")
	if host == "" {
		return velero.NewRestoreItemActionExecuteOutput(u), nil
	}
	unstructured.RemoveNestedField(u.Object, "spec", "host")
	a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()}).Infof("cleared generated host %s; the target router generates a new one", host)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
