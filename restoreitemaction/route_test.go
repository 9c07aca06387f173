package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestRouteAction(t *testing.T) {
	route := func(host string, ann map[string]any) *unstructured.Unstructured {
		fields := map[string]any{"spec.host": host, "spec.to": map[string]any{"kind": "Service", "name": "web"}}
		if ann != nil {
			fields["metadata.annotations"] = ann
		}
		return testutil.Object("route.openshift.io/v1", "Route", "app", "web", fields)
	}
	tests := []struct {
		name string
		in   *unstructured.Unstructured
		want string
	}{
		{"generated host cleared", route("web-app.apps.source.example", map[string]any{keys.RouteHostGenerated: "true"}), ""},
		{"custom host kept", route("shop.example.com", nil), "shop.example.com"},
		{"explicitly not generated kept", route("shop.example.com", map[string]any{keys.RouteHostGenerated: "false"}), "shop.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			o, err := NewRouteAction(log).Execute(inputU(tc.in, restoreWith()))
			require.NoError(t, err)
			host, found, _ := unstructured.NestedString(out(t, o).Object, "spec", "host")
			assert.Equal(t, tc.want, host)
			assert.Equal(t, tc.want != "", found, "a generated host is removed, not set to \"\" (the Route schema rejects that)")
			assert.False(t, o.SkipRestore)
		})
	}
}
