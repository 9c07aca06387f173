package restoreitemaction

import (
	"context"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestSCCAction(t *testing.T) {
	backedUp := testutil.Object("security.openshift.io/v1", "SecurityContextConstraints", "", "app-anyuid", map[string]any{
		"users":  []any{"system:serviceaccount:app:runner", "system:serviceaccount:other:x", "alice"},
		"groups": []any{"system:serviceaccounts:app"},
	})
	log, _ := testutil.NewLogger()

	t.Run("new on the target: restored with mapped users and groups", func(t *testing.T) {
		target := testutil.NewCluster(testutil.OpenShift())
		o, err := NewSCCAction(log, target.Clients).Execute(inputU(backedUp, restoreWith("app", "app2")))
		require.NoError(t, err)
		assert.False(t, o.SkipRestore)
		users, _, _ := unstructured.NestedStringSlice(out(t, o).Object, "users")
		assert.Equal(t, []string{"system:serviceaccount:app2:runner", "system:serviceaccount:other:x", "alice"}, users)
		groups, _, _ := unstructured.NestedStringSlice(out(t, o).Object, "groups")
		assert.Equal(t, []string{"system:serviceaccounts:app2"}, groups)
	})

	t.Run("already on the target: the restored namespace's grants are added, nothing removed", func(t *testing.T) {
		live := &securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "app-anyuid"}, Users: []string{"system:admin"}}
		target := testutil.NewCluster(testutil.WithSecurityObjects(live))
		restore := restoreWith("app", "app2")
		restore.Spec.IncludedNamespaces = []string{"app"}
		o, err := NewSCCAction(log, target.Clients).Execute(inputU(backedUp, restore))
		require.NoError(t, err)
		assert.True(t, o.SkipRestore, "Velero would skip it anyway; the grant was added to the live one")
		got, err := target.Security.SecurityV1().SecurityContextConstraints().Get(context.Background(), "app-anyuid", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{"system:admin", "system:serviceaccount:app2:runner"}, got.Users, "other namespaces and plain users are not granted on the target")
		assert.Equal(t, []string{"system:serviceaccounts:app2"}, got.Groups)

		// running it again adds nothing twice
		_, err = NewSCCAction(log, target.Clients).Execute(inputU(backedUp, restore))
		require.NoError(t, err)
		got, _ = target.Security.SecurityV1().SecurityContextConstraints().Get(context.Background(), "app-anyuid", metav1.GetOptions{})
		assert.Len(t, got.Users, 2)
	})
}

func TestSCCActionGrantsFromTheBackup(t *testing.T) {
	// An action before ferry's (openshift-velero-plugin) mapped the users already; with the
	// mapping {app: app2, app2: app} the grants must still be the backed-up users mapped once.
	backedUp := testutil.Object("security.openshift.io/v1", "SecurityContextConstraints", "", "app-anyuid", map[string]any{
		"users": []any{"system:serviceaccount:app:runner"},
	})
	item := backedUp.DeepCopy()
	require.NoError(t, unstructured.SetNestedStringSlice(item.Object, []string{"system:serviceaccount:app2:runner"}, "users"))
	live := &securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "app-anyuid"}}
	target := testutil.NewCluster(testutil.WithSecurityObjects(live))
	log, _ := testutil.NewLogger()
	restore := restoreWith("app", "app2", "app2", "app")
	o, err := NewSCCAction(log, target.Clients).Execute(&velero.RestoreItemActionExecuteInput{Item: item, ItemFromBackup: backedUp, Restore: restore})
	require.NoError(t, err)
	assert.True(t, o.SkipRestore)
	got, err := target.Security.SecurityV1().SecurityContextConstraints().Get(context.Background(), "app-anyuid", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"system:serviceaccount:app2:runner"}, got.Users)
}
