package datamover

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

func obj(apiVersion, kind, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetNamespace("app")
	u.SetName(name)
	for path, v := range fields {
		_ = unstructured.SetNestedField(u.Object, v, splitDots(path)...)
	}
	return u
}

func splitDots(p string) []string {
	var out []string
	start := 0
	for i := range p {
		if p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

func claimVolume(claim string) []any {
	return []any{map[string]any{"name": "v", "persistentVolumeClaim": map[string]any{"claimName": claim}}}
}

func TestWorkloadsUsingAndRollback(t *testing.T) {
	yes := true
	ownedRS := obj("apps/v1", "ReplicaSet", "web-abc", map[string]any{"spec.template.spec.volumes": claimVolume("data")})
	ownedRS.SetOwnerReferences([]metav1.OwnerReference{{Kind: "Deployment", Name: "web", Controller: &yes}})
	objs := []runtime.Object{
		obj("apps/v1", "Deployment", "web", map[string]any{"spec.replicas": int64(2), "spec.template.spec.volumes": claimVolume("data")}),
		ownedRS,
		obj("apps/v1", "Deployment", "other", map[string]any{"spec.replicas": int64(1), "spec.template.spec.volumes": claimVolume("logs")}),
		obj("apps/v1", "StatefulSet", "db", map[string]any{"spec.volumeClaimTemplates": []any{map[string]any{"metadata": map[string]any{"name": "data"}}}}),
		obj("batch/v1", "CronJob", "backup", map[string]any{"spec.jobTemplate.spec.template.spec.volumes": claimVolume("data")}),
		obj("apps/v1", "DaemonSet", "agent", map[string]any{"spec.template.spec.volumes": claimVolume("data")}),
	}
	gvrs := map[schema.GroupVersionResource]string{}
	for _, wk := range workloadKinds {
		gvrs[wk.gvr] = wk.kind + "List"
	}
	gvrs[schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}] = "PersistentVolumeList"
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs, objs...)
	apis := kube.NewAPIs(kubefake.NewSimpleClientset().Discovery())
	ctx := context.Background()

	got, err := workloadsUsing(ctx, dyn, apis, "app", "data")
	require.NoError(t, err)
	var names []string
	for _, u := range got {
		names = append(names, u.GetKind()+"/"+u.GetName())
	}
	assert.ElementsMatch(t, []string{"Deployment/web", "CronJob/backup", "DaemonSet/agent"}, names, "the ReplicaSet goes with its Deployment")

	got, err = workloadsUsing(ctx, dyn, apis, "app", "data-db-0")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "db", got[0].GetName(), "a StatefulSet's claim template made data-db-0")
	got, err = workloadsUsing(ctx, dyn, apis, "app", "data-db-x")
	require.NoError(t, err)
	assert.Empty(t, got)

	// quiesce through the same code the controller uses, then roll back
	for _, u := range []*unstructured.Unstructured{objs[0].(*unstructured.Unstructured)} {
		cur, err := dyn.Resource(gvrOfKind(u.GetKind())).Namespace("app").Get(ctx, u.GetName(), metav1.GetOptions{})
		require.NoError(t, err)
		cur.SetLabels(map[string]string{keys.Quiesced: "t1"})
		cur.SetAnnotations(map[string]string{keys.PreQuiesceReplicas: "2"})
		require.NoError(t, unstructured.SetNestedField(cur.Object, int64(0), "spec", "replicas"))
		_, err = dyn.Resource(gvrOfKind(u.GetKind())).Namespace("app").Update(ctx, cur, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	changed, err := Rollback(ctx, dyn, apis, []string{"app"})
	require.NoError(t, err)
	assert.Equal(t, []string{"Deployment app/web unquiesced"}, changed)
	web, err := dyn.Resource(gvrOfKind("Deployment")).Namespace("app").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	n, _, _ := unstructured.NestedInt64(web.Object, "spec", "replicas")
	assert.Equal(t, int64(2), n)
}
