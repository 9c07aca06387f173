package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/testutil"
)

const (
	srcRegistry = "image-registry.openshift-image-registry.svc:5000"
	tgtRegistry = "registry.target.example:5000"
)

// restoreWith returns a Restore mapping namespaces as "src", "dst" pairs.
func restoreWith(mapping ...string) *velerov1.Restore {
	return builder.ForRestore("velero", "r1").Backup("b1").NamespaceMappings(mapping...).Result()
}

// input builds the RestoreItemActionExecuteInput Velero would send: the item (as after Velero's
// metadata reset) and the item as it is in the backup.
func input(t *testing.T, obj runtime.Object, restore *velerov1.Restore) *velero.RestoreItemActionExecuteInput {
	t.Helper()
	return &velero.RestoreItemActionExecuteInput{
		Item:           testutil.Unstructured(t, obj),
		ItemFromBackup: testutil.Unstructured(t, obj),
		Restore:        restore,
	}
}

func inputU(u *unstructured.Unstructured, restore *velerov1.Restore) *velero.RestoreItemActionExecuteInput {
	return &velero.RestoreItemActionExecuteInput{Item: u.DeepCopy(), ItemFromBackup: u.DeepCopy(), Restore: restore}
}

func configOf(t *testing.T, data map[string]string) func() (*config.Config, error) {
	c, err := config.Parse(data)
	require.NoError(t, err)
	return func() (*config.Config, error) { return c, nil }
}

// targetOpenShift is a fake OpenShift target whose internal registry is tgtRegistry.
func targetOpenShift(objs ...runtime.Object) *testutil.Cluster {
	imageConfig := testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname": tgtRegistry,
	})
	return testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig), testutil.WithObjects(objs...))
}

func deployment(ns, name string, ann map[string]string, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
	}
}

func out(t *testing.T, o *velero.RestoreItemActionExecuteOutput) *unstructured.Unstructured {
	t.Helper()
	u, ok := o.UpdatedItem.(*unstructured.Unstructured)
	require.True(t, ok)
	return u
}
