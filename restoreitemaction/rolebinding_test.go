package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestRoleBindingAction(t *testing.T) {
	rbac := testutil.Object("rbac.authorization.k8s.io/v1", "RoleBinding", "app", "edit", map[string]any{
		"subjects": []any{
			map[string]any{"kind": "ServiceAccount", "name": "runner", "namespace": "app"},
			map[string]any{"kind": "User", "name": "system:serviceaccount:app:runner"},
			map[string]any{"kind": "Group", "name": "system:serviceaccounts:app"},
			map[string]any{"kind": "User", "name": "alice"},
			map[string]any{"kind": "Group", "name": "system:serviceaccounts:unmapped"},
		},
		"roleRef": map[string]any{"kind": "ClusterRole", "name": "edit", "apiGroup": "rbac.authorization.k8s.io"},
	})
	ocp := testutil.Object("authorization.openshift.io/v1", "RoleBinding", "app", "edit", map[string]any{
		"subjects":   []any{map[string]any{"kind": "ServiceAccount", "name": "runner", "namespace": "app"}},
		"userNames":  []any{"system:serviceaccount:app:runner", "alice"},
		"groupNames": []any{"system:serviceaccounts:app"},
		"roleRef":    map[string]any{"name": "edit", "namespace": "app"},
	})
	log, _ := testutil.NewLogger()
	a := NewRoleBindingAction(log)

	o, err := a.Execute(inputU(rbac, restoreWith("app", "app2")))
	require.NoError(t, err)
	subjects, _, _ := unstructured.NestedSlice(out(t, o).Object, "subjects")
	names := []string{}
	for _, s := range subjects {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	assert.Equal(t, []string{"runner", "system:serviceaccount:app2:runner", "system:serviceaccounts:app2", "alice", "system:serviceaccounts:unmapped"}, names)
	assert.Equal(t, "app", subjects[0].(map[string]any)["namespace"], "rbac subject namespaces are mapped by Velero's own action")

	o, err = a.Execute(inputU(ocp, restoreWith("app", "app2")))
	require.NoError(t, err)
	u := out(t, o)
	subjects, _, _ = unstructured.NestedSlice(u.Object, "subjects")
	assert.Equal(t, "app2", subjects[0].(map[string]any)["namespace"])
	users, _, _ := unstructured.NestedStringSlice(u.Object, "userNames")
	assert.Equal(t, []string{"system:serviceaccount:app2:runner", "alice"}, users)
	groups, _, _ := unstructured.NestedStringSlice(u.Object, "groupNames")
	assert.Equal(t, []string{"system:serviceaccounts:app2"}, groups)
	ns, _, _ := unstructured.NestedString(u.Object, "roleRef", "namespace")
	assert.Equal(t, "app2", ns)

	// without a mapping nothing changes
	o, err = a.Execute(inputU(ocp, restoreWith()))
	require.NoError(t, err)
	assert.Equal(t, ocp.Object, out(t, o).Object)
}
