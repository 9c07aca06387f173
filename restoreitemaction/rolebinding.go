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
	u, from, ok := restoredItem(input)
	nsMap := namespaceMapping(input)
	if !ok || len(nsMap) == 0 {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	// openshift-velero-plugin maps OpenShift bindings too: what it mapped before ferry ran is left
	// as it is (see once), so each value is compared with the backed-up one.
	openShift := u.GroupVersionKind().Group == "authorization.openshift.io"
	changed := false
	set := func(m map[string]any, key, was string, fn func(string) string) {
		v, _ := m[key].(string)
		if out := once(v, was, fn); out != v {
			m[key], changed = out, true
		}
	}
	mapNS := func(ns string) string { return mapNamespace(nsMap, ns) }
	mapUser := func(s string) string { return mapUserName(s, nsMap) }
	mapGroup := func(s string) string { return mapGroupName(s, nsMap) }
	subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
	backedUp, _, _ := unstructured.NestedSlice(from.Object, "subjects")
	for i, s := range subjects {
		sm, _ := s.(map[string]any)
		if sm == nil {
			continue
		}
		var was map[string]any
		if i < len(backedUp) {
			was, _ = backedUp[i].(map[string]any)
		}
		wasName, _ := was["name"].(string)
		switch sm["kind"] {
		case "User", "SystemUser":
			set(sm, "name", wasName, mapUser)
		case "Group", "SystemGroup":
			set(sm, "name", wasName, mapGroup)
		}
		// rbac subjects' namespaces are Velero's; OpenShift's are ours.
		if ns, _ := sm["namespace"].(string); ns != "" && openShift {
			wasNS, _ := was["namespace"].(string)
			set(sm, "namespace", wasNS, mapNS)
		}
	}
	if len(subjects) > 0 {
		if err := unstructured.SetNestedSlice(u.Object, subjects, "subjects"); err != nil {
			return nil, err
		}
	}
	if openShift {
		for field, fn := range map[string]func(string) string{"userNames": mapUser, "groupNames": mapGroup} {
			list, found, _ := unstructured.NestedStringSlice(u.Object, field)
			was, _, _ := unstructured.NestedStringSlice(from.Object, field)
			if !found {
				continue
			}
			fieldChanged := false
			for i, v := range list {
				if out := once(v, at(was, i), fn); out != v {
					list[i], fieldChanged = out, true
				}
			}
			if fieldChanged {
				changed = true
				if err := unstructured.SetNestedStringSlice(u.Object, list, field); err != nil {
					return nil, err
				}
			}
		}
		if ns, _, _ := unstructured.NestedString(u.Object, "roleRef", "namespace"); ns != "" {
			wasNS, _, _ := unstructured.NestedString(from.Object, "roleRef", "namespace")
			if out := once(ns, wasNS, mapNS); out != ns {
				changed = true
				if err := unstructured.SetNestedField(u.Object, out, "roleRef", "namespace"); err != nil {
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
