package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestBuildConfigAction(t *testing.T) {
	bc := testutil.Object("build.openshift.io/v1", "BuildConfig", "app", "web", map[string]any{
		"metadata.annotations": map[string]any{keys.SourceRegistry: srcRegistry},
		"spec.output": map[string]any{
			"to":         map[string]any{"kind": "DockerImage", "name": srcRegistry + "/app/web:latest"},
			"pushSecret": map[string]any{"name": "builder-dockercfg-abcde"},
		},
		"spec.strategy.sourceStrategy": map[string]any{
			"from":       map[string]any{"kind": "ImageStreamTag", "namespace": "app", "name": "ruby:3.3"},
			"pullSecret": map[string]any{"name": "my-pull-creds"},
		},
		"spec.source.images": []any{
			map[string]any{"from": map[string]any{"kind": "DockerImage", "name": srcRegistry + "/shared/assets:1"}, "pullSecret": map[string]any{"name": "builder-dockercfg-abcde"}},
			map[string]any{"from": map[string]any{"kind": "DockerImage", "name": "quay.io/org/tool:2"}},
		},
		"spec.triggers": []any{map[string]any{"type": "ImageChange", "imageChange": map[string]any{"from": map[string]any{"kind": "ImageStreamTag", "namespace": "app", "name": "ruby:3.3"}}}},
	})
	builderSA := builder.ForServiceAccount("app2", "builder").Result()
	builderSA.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "builder-dockercfg-t4rgt"}}
	log, _ := testutil.NewLogger()
	a := NewBuildConfigAction(log, targetOpenShift(builderSA).Clients, configOf(t, nil))
	o, err := a.Execute(inputU(bc, restoreWith("app", "app2")))
	require.NoError(t, err)
	u := out(t, o)
	get := func(path ...string) string { s, _, _ := unstructured.NestedString(u.Object, path...); return s }
	assert.Equal(t, tgtRegistry+"/app2/web:latest", get("spec", "output", "to", "name"))
	assert.Equal(t, "builder-dockercfg-t4rgt", get("spec", "output", "pushSecret", "name"))
	assert.Equal(t, "app2", get("spec", "strategy", "sourceStrategy", "from", "namespace"))
	assert.Equal(t, "my-pull-creds", get("spec", "strategy", "sourceStrategy", "pullSecret", "name"))
	images, _, _ := unstructured.NestedSlice(u.Object, "spec", "source", "images")
	first := images[0].(map[string]any)
	assert.Equal(t, tgtRegistry+"/shared/assets:1", first["from"].(map[string]any)["name"], "the fix of openshift-velero-plugin's range-copy bug: source images are rewritten")
	assert.Equal(t, "builder-dockercfg-t4rgt", first["pullSecret"].(map[string]any)["name"])
	assert.Equal(t, "quay.io/org/tool:2", images[1].(map[string]any)["from"].(map[string]any)["name"])
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	assert.Equal(t, "app2", triggers[0].(map[string]any)["imageChange"].(map[string]any)["from"].(map[string]any)["namespace"])

	// The target has no builder secret yet: the generated reference is dropped, not waited for.
	a = NewBuildConfigAction(log, targetOpenShift().Clients, configOf(t, nil))
	o, err = a.Execute(inputU(bc, restoreWith("app", "app2")))
	require.NoError(t, err)
	_, found, _ := unstructured.NestedMap(out(t, o).Object, "spec", "output", "pushSecret")
	assert.False(t, found)
}
