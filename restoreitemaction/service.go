package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
)

// ServiceAction drops the externalIPs of LoadBalancer Services: they are addresses of the source
// cluster's network (OpenShift assigns them to load balancers itself). In a migration it drops
// them from every Service: on another cluster's network they would at best route nowhere and at
// worst claim traffic meant for someone else's address (CVE-2020-8554); set them again on the
// target if the addresses moved too. An ordinary restore (back into the same network) keeps them.
// ClusterIP and node ports are Velero's own service action's business.
type ServiceAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*ServiceAction)(nil)

func NewServiceAction(log logrus.FieldLogger) *ServiceAction { return &ServiceAction{log: log} }

func (a *ServiceAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"services"}}, nil
}

func (a *ServiceAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	ann := u.GetAnnotations()
	_, migration := ann[keys.BackupMigration]
	if migration {
		delete(ann, keys.BackupMigration)
		u.SetAnnotations(ann)
	}
	typ, _, _ := unstructured.NestedString(u.Object, "spec", "type")
	ips, found, _ := unstructured.NestedStringSlice(u.Object, "spec", "externalIPs")
	if !found || (typ != "LoadBalancer" && !migration) {
		return velero.NewRestoreItemActionExecuteOutput(u), nil
	}
	unstructured.RemoveNestedField(u.Object, "spec", "externalIPs")
	a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()}).Infof("dropped the source's external IPs %v", ips)
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
