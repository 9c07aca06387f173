package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// RoleBindingAction makes (cluster) role bindings follow the restore's namespace mapping where
// a namespace hides inside a name: User subjects "system:serviceaccount:<ns>:<sa>" and Group
// subjects "system:serviceaccounts:<ns>". For OpenShift's authorization.openshift.io bindings it
// also maps subject namespaces, userNames, groupNames and roleRef.namespace, which Velero's own
// role-binding actions (subjects[].namespace of rbac bindings only) do not cover.
type RoleBindingAction struct{ log logrus.FieldLogger }

var _ riav1.RestoreItemAction = (*RoleBindingAction)(nil)

func NewRoleBindingAction(log logrus.FieldLogger) *RoleBindingAction {
	return &RoleBindingAction{log: log}
}

func (a *RoleBindingAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{
		"rolebindings.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
		"rolebindings.authorization.openshift.io", "clusterrolebindings.authorization.openshift.io",
	}}, nil
}

func (a *RoleBindingAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	nsMap := namespaceMapping(input)
	if !ok || len(nsMap) == 0 {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	openShift := u.GroupVersionKind().Group == "authorization.openshift.io"
	changed := false
	subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
	for _, s := range subjects {
		sm, _ := s.(map[string]any)
		name, _ := sm["name"].(string)
		switch sm["kind"] {
		case "User", "SystemUser":
			if m := mapUserName(name, nsMap); m != name {
				sm["name"], changed = m, true
			}
		case "Group", "SystemGroup":
			if m := mapGroupName(name, nsMap); m != name {
				sm["name"], changed = m, true
			}
		}
		// rbac subjects' namespaces are Velero's; OpenShift's are ours.
		if ns, ok := sm["namespace"].(string); ok && ns != "" && openShift {
			if m := mapNamespace(nsMap, ns); m != ns {
				sm["namespace"], changed = m, true
			}
		}
	}
	if len(subjects) > 0 {
		if err := unstructured.SetNestedSlice(u.Object, subjects, "subjects"); err != nil {
			return nil, err
		}
	}
	if openShift {
		for field, fn := range map[string]func(string, map[string]string) string{"userNames": mapUserName, "groupNames": mapGroupName} {
			list, found, _ := unstructured.NestedSlice(u.Object, field)
			if found && mapNames(list, func(s string) string { return fn(s, nsMap) }) {
				changed = true
				if err := unstructured.SetNestedSlice(u.Object, list, field); err != nil {
					return nil, err
				}
			}
		}
		if ns, _, _ := unstructured.NestedString(u.Object, "roleRef", "namespace"); ns != "" {
			if m := mapNamespace(nsMap, ns); m != ns {
				changed = true
				if err := unstructured.SetNestedField(u.Object, m, "roleRef", "namespace"); err != nil {
					return nil, err
				}
			}
		}
	}
	if changed {
		a.log.WithFields(logrus.Fields{"kind": u.GetKind(), "namespace": u.GetNamespace(), "name": u.GetName()}).Info("subjects follow the namespace mapping")
	}
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}
