package quiesce

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func claimVolume(claim string) []any {
	return []any{map[string]any{"name": "v", "persistentVolumeClaim": map[string]any{"claimName": claim}}}
}

func appPod(name, claim string, owned bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
		Spec:   corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if owned {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", Controller: &yes}}
	}
	return p
}

func workloads() []runtime.Object {
	yes := true
	ownedRS := testutil.Object("apps/v1", "ReplicaSet", "app", "web-abc", map[string]any{"spec.template.spec.volumes": claimVolume("data")})
	ownedRS.SetOwnerReferences([]metav1.OwnerReference{{Kind: "Deployment", Name: "web", Controller: &yes}})
	return []runtime.Object{
		testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(2), "spec.template.spec.volumes": claimVolume("data")}),
		ownedRS,
		testutil.Object("apps/v1", "Deployment", "app", "other", map[string]any{"spec.replicas": int64(1), "spec.template.spec.volumes": claimVolume("logs")}),
		testutil.Object("apps/v1", "StatefulSet", "app", "db", map[string]any{"spec.volumeClaimTemplates": []any{map[string]any{"metadata": map[string]any{"name": "data"}}}}),
		testutil.Object("batch/v1", "CronJob", "app", "backup", map[string]any{"spec.jobTemplate.spec.template.spec.volumes": claimVolume("data")}),
		testutil.Object("apps/v1", "DaemonSet", "app", "agent", map[string]any{"spec.template.spec.volumes": claimVolume("data")}),
	}
}

func TestWorkloadsUsing(t *testing.T) {
	c := testutil.NewCluster(testutil.WithDynamicObjects(workloads()...))
	ctx := context.Background()
	for _, tc := range []struct {
		pvc  string
		want []string
	}{
		{"data", []string{"Deployment/web", "CronJob/backup", "DaemonSet/agent"}}, // the ReplicaSet goes with its Deployment
		{"data-db-0", []string{"StatefulSet/db"}},                                 // made by the claim template
		{"data-db-x", nil},
		{"logs", []string{"Deployment/other"}},
	} {
		got, err := WorkloadsUsing(ctx, c.Clients, "app", tc.pvc)
		require.NoError(t, err)
		var names []string
		for _, u := range got {
			names = append(names, u.GetKind()+"/"+u.GetName())
		}
		assert.ElementsMatch(t, tc.want, names, tc.pvc)
	}
}

func TestStopUsersThenRollback(t *testing.T) {
	c := testutil.NewCluster(testutil.WithDynamicObjects(workloads()...), testutil.WithObjects(appPod("web-abc-1", "data", true)))
	ctx := context.Background()
	done, err := StopUsers(ctx, c.Clients, "app", "data", "t1", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"CronJob/backup", "DaemonSet/agent", "Deployment/web"}, done)
	web, err := c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	n, _, _ := unstructured.NestedInt64(web.Object, "spec", "replicas")
	assert.Zero(t, n)
	assert.Equal(t, "t1", web.GetLabels()[keys.Quiesced])

	again, err := StopUsers(ctx, c.Clients, "app", "data", "t2", false)
	require.NoError(t, err)
	assert.Equal(t, done, again, "idempotent")
	web, _ = c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "web", metav1.GetOptions{})
	assert.Equal(t, "2", web.GetAnnotations()[keys.PreQuiesceReplicas], "the first recorded value stays")

	dry, err := Rollback(ctx, c.Clients, []string{"app"}, true)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"Deployment app/web unquiesced", "CronJob app/backup unquiesced", "DaemonSet app/agent unquiesced"}, strs(dry))
	web, _ = c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "web", metav1.GetOptions{})
	n, _, _ = unstructured.NestedInt64(web.Object, "spec", "replicas")
	assert.Zero(t, n, "a dry run changes nothing")
	changed, err := Rollback(ctx, c.Clients, []string{"app"}, false)
	require.NoError(t, err)
	assert.Equal(t, dry, changed, "the dry run said what happens")
	web, _ = c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "web", metav1.GetOptions{})
	n, _, _ = unstructured.NestedInt64(web.Object, "spec", "replicas")
	assert.Equal(t, int64(2), n)
	assert.NotContains(t, web.GetLabels(), keys.Quiesced)
}

func TestStopUsersRefusesBarePods(t *testing.T) {
	c := testutil.NewCluster(testutil.WithDynamicObjects(workloads()...), testutil.WithObjects(appPod("debug", "data", false)))
	done, err := StopUsers(context.Background(), c.Clients, "app", "data", "t1", true)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrBarePod))
	assert.Contains(t, err.Error(), "pod app/debug mounts PVC data and has no controller to scale down")
	assert.Empty(t, done, "nothing was scaled down")
	web, _ := c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	assert.NotContains(t, web.GetLabels(), keys.Quiesced)
}

func TestStopUsersOfTheWholeNamespace(t *testing.T) {
	elsewhere := testutil.Object("apps/v1", "Deployment", "shop", "front", map[string]any{"spec.replicas": int64(3)})
	// A bare pod that does not mount the PVC is not ferry's to stop, and does not block.
	bare := appPod("debug", "scratch", false)
	c := testutil.NewCluster(testutil.WithDynamicObjects(append(workloads(), elsewhere)...), testutil.WithObjects(appPod("web-abc-1", "data", true), bare))
	ctx := context.Background()
	done, err := StopUsers(ctx, c.Clients, "app", "data", "t1", true)
	require.NoError(t, err)
	assert.Equal(t, []string{"CronJob/backup", "DaemonSet/agent", "Deployment/other", "Deployment/web", "StatefulSet/db"}, done,
		"every top-level workload of the namespace, mounting the PVC or not; the ReplicaSet goes with its Deployment")
	other, err := c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "other", metav1.GetOptions{})
	require.NoError(t, err)
	n, _, _ := unstructured.NestedInt64(other.Object, "spec", "replicas")
	assert.Zero(t, n)
	assert.Equal(t, "1", other.GetAnnotations()[keys.PreQuiesceReplicas])
	front, err := c.Dynamic.Resource(Kinds[0].Resource).Namespace("shop").Get(ctx, "front", metav1.GetOptions{})
	require.NoError(t, err)
	n, _, _ = unstructured.NestedInt64(front.Object, "spec", "replicas")
	assert.Equal(t, int64(3), n, "another namespace is not touched")

	back, err := Restart(ctx, c.Clients, "app", "t1")
	require.NoError(t, err)
	assert.Len(t, back, len(done), "a final that did not complete brings back all it stopped")
	other, _ = c.Dynamic.Resource(Kinds[0].Resource).Namespace("app").Get(ctx, "other", metav1.GetOptions{})
	n, _, _ = unstructured.NestedInt64(other.Object, "spec", "replicas")
	assert.Equal(t, int64(1), n)
}

func TestRollbackPutsBackReclaimPolicies(t *testing.T) {
	pv := func(name, ns string, ann map[string]string) *unstructured.Unstructured {
		u := testutil.Object("v1", "PersistentVolume", "", name, map[string]any{"spec.persistentVolumeReclaimPolicy": "Retain", "spec.claimRef.namespace": ns})
		u.SetAnnotations(ann)
		return u
	}
	c := testutil.NewCluster(testutil.WithDynamicObjects(
		pv("moved", "app", map[string]string{keys.OriginalReclaimPolicy: "Delete"}),
		pv("elsewhere", "other", map[string]string{keys.OriginalReclaimPolicy: "Delete"}),
		pv("untouched", "app", nil)))
	changed, err := Rollback(context.Background(), c.Clients, []string{"app"}, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"PV moved reclaim policy back to Delete"}, strs(changed))
	got, _ := c.Dynamic.Resource(persistentVolumes).Get(context.Background(), "moved", metav1.GetOptions{})
	p, _, _ := unstructured.NestedString(got.Object, "spec", "persistentVolumeReclaimPolicy")
	assert.Equal(t, "Delete", p)
	assert.NotContains(t, got.GetAnnotations(), keys.OriginalReclaimPolicy)
}

func TestKindsTable(t *testing.T) {
	assert.Contains(t, Resources(), "deployments.apps")
	assert.Contains(t, Resources(), "replicationcontrollers")
	assert.Contains(t, Resources(), "deploymentconfigs.apps.openshift.io")
	for _, k := range Kinds {
		u := testutil.Object(k.Resource.GroupVersion().String(), k.Kind, "app", "w", nil)
		changed, err := Quiesce(u, "t1")
		require.NoError(t, err, k.Kind)
		assert.True(t, changed, "every kind in the table can be quiesced: %s", k.Kind)
		changed, err = Unquiesce(u)
		require.NoError(t, err, k.Kind)
		assert.True(t, changed, k.Kind)
	}
	_, err := Quiesce(testutil.Object("v1", "Pod", "app", "p", nil), "t1")
	assert.ErrorContains(t, err, "ferry cannot quiesce this kind")
}

func strs(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}
