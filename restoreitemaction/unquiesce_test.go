package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestUnquiesceAction(t *testing.T) {
	log, _ := testutil.NewLogger()
	d := testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(3)})
	_, err := quiesce.Quiesce(d, "u1")
	require.NoError(t, err)

	o, err := NewUnquiesceAction(log).Execute(inputU(d, restoreWith()))
	require.NoError(t, err)
	n, _, _ := unstructured.NestedInt64(out(t, o).Object, "spec", "replicas")
	assert.Equal(t, int64(3), n, "the app comes up on the target with its old replica count")
	assert.NotContains(t, out(t, o).GetAnnotations(), keys.PreQuiesceReplicas)
	assert.NotContains(t, out(t, o).GetLabels(), keys.Quiesced)

	bad := testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(0)})
	bad.SetAnnotations(map[string]string{keys.PreQuiesceReplicas: "-1"})
	_, err = NewUnquiesceAction(log).Execute(inputU(bad, restoreWith()))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Deployment app/web")
}
