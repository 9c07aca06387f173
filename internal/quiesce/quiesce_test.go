package quiesce

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		obj     *unstructured.Unstructured
		stopped func(t *testing.T, u *unstructured.Unstructured)
	}{
		{
			name: "Deployment with 3 replicas",
			obj:  testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(3)}),
			stopped: func(t *testing.T, u *unstructured.Unstructured) {
				n, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
				assert.Zero(t, n)
			},
		},
		{
			name: "StatefulSet without replicas means 1",
			obj:  testutil.Object("apps/v1", "StatefulSet", "app", "db", map[string]any{"spec.serviceName": "db"}),
			stopped: func(t *testing.T, u *unstructured.Unstructured) {
				assert.Equal(t, "1", u.GetAnnotations()[keys.PreQuiesceReplicas])
			},
		},
		{
			name: "paused DeploymentConfig is unpaused so it scales",
			obj:  testutil.Object("apps.openshift.io/v1", "DeploymentConfig", "app", "dc", map[string]any{"spec.replicas": int64(2), "spec.paused": true}),
			stopped: func(t *testing.T, u *unstructured.Unstructured) {
				p, _, _ := unstructured.NestedBool(u.Object, "spec", "paused")
				assert.False(t, p)
			},
		},
		{
			name: "CronJob suspended",
			obj:  testutil.Object("batch/v1", "CronJob", "app", "nightly", map[string]any{"spec.schedule": "0 1 * * *"}),
			stopped: func(t *testing.T, u *unstructured.Unstructured) {
				s, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
				assert.True(t, s)
			},
		},
		{
			name: "DaemonSet kept off every node",
			obj:  testutil.Object("apps/v1", "DaemonSet", "app", "agent", map[string]any{"spec.template.spec.nodeSelector": map[string]any{"disk": "ssd"}}),
			stopped: func(t *testing.T, u *unstructured.Unstructured) {
				sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
				assert.Equal(t, map[string]string{keys.QuiesceNodeSelector: "true"}, sel)
			},
		},
		{
			name: "DaemonSet without a selector gets none back",
			obj:  testutil.Object("apps/v1", "DaemonSet", "app", "agent2", map[string]any{"spec.template.spec.containers": []any{}}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			original := tc.obj.DeepCopy()
			changed, err := Quiesce(tc.obj, "id-1")
			require.NoError(t, err)
			assert.True(t, changed)
			assert.True(t, Quiesced(tc.obj))
			assert.Equal(t, "id-1", tc.obj.GetLabels()[keys.Quiesced])
			if tc.stopped != nil {
				tc.stopped(t, tc.obj)
			}
			// idempotent: a second quiesce keeps the first recorded values
			again, err := Quiesce(tc.obj, "id-2")
			require.NoError(t, err)
			assert.False(t, again)
			assert.Equal(t, "id-1", tc.obj.GetLabels()[keys.Quiesced])

			changed, err = Unquiesce(tc.obj)
			require.NoError(t, err)
			assert.True(t, changed)
			assert.False(t, Quiesced(tc.obj))
			// nothing of ferry's is left, and the spec is as it was
			assert.Empty(t, tc.obj.GetAnnotations())
			assert.Empty(t, tc.obj.GetLabels())
			if _, found, _ := unstructured.NestedFieldNoCopy(original.Object, "spec", "replicas"); found {
				assert.Equal(t, original.Object["spec"], tc.obj.Object["spec"])
			}
		})
	}
}

func TestUnquiesceMalformed(t *testing.T) {
	for key, value := range map[string]string{
		keys.PreQuiesceReplicas:     "three",
		keys.PreQuiesceSuspend:      "perhaps",
		keys.PreQuiesceNodeSelector: "{not json",
	} {
		u := testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(0)})
		u.SetAnnotations(map[string]string{key: value})
		before := u.DeepCopy()
		_, err := Unquiesce(u)
		require.Error(t, err, key)
		assert.Contains(t, err.Error(), "Deployment app/web")
		assert.Contains(t, err.Error(), key)
		assert.Equal(t, before, u, "left unchanged on error")
	}
}

func TestQuiesceUnknownKind(t *testing.T) {
	_, err := Quiesce(testutil.Object("v1", "Pod", "app", "p", nil), "id")
	assert.ErrorContains(t, err, "Pod app/p")
	_, known := KindOf("Pod")
	assert.False(t, known)
	_, known = KindOf("DeploymentConfig")
	assert.True(t, known)
}

func TestNotQuiescedIsUntouched(t *testing.T) {
	u := testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(2)})
	changed, err := Unquiesce(u)
	require.NoError(t, err)
	assert.False(t, changed)
}
