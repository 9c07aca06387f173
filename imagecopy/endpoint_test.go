package imagecopy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestTargetRegistryEndpoint(t *testing.T) {
	imagesConfig := func(external ...any) runtime.Object {
		return testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
			"status.internalRegistryHostname":  "image-registry.openshift-image-registry.svc:5000",
			"status.externalRegistryHostnames": external,
		})
	}
	route := func(ns, name, host string) runtime.Object {
		return testutil.Object("route.openshift.io/v1", "Route", ns, name, map[string]any{"spec.host": host})
	}
	tests := []struct {
		name     string
		override string
		cluster  *testutil.Cluster
		want     string
		wantErr  string
	}{
		{
			name:     "the configured endpoint wins",
			override: "registry.target.example:443",
			cluster:  testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imagesConfig("ext.example"))),
			want:     "registry.target.example:443",
		},
		{
			name:    "OpenShift 4: the first external registry hostname",
			cluster: testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imagesConfig("ext.example", "other.example"))),
			want:    "ext.example",
		},
		{
			name: "OpenShift 4 without external names: the registry's default route",
			cluster: testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imagesConfig(),
				route("openshift-image-registry", "default-route", "default-route-openshift-image-registry.apps.example"))),
			want: "default-route-openshift-image-registry.apps.example",
		},
		{
			name:    "OpenShift 3: the docker-registry route",
			cluster: testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(route("default", "docker-registry", "docker-registry-default.apps.example"))),
			want:    "docker-registry-default.apps.example",
		},
		{
			name:    "an internal name alone is not reachable from the source: a clear error",
			cluster: testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imagesConfig())),
			wantErr: "set targetRegistryEndpoint in ferry-config",
		},
		{
			name:    "plain Kubernetes without configuration",
			cluster: testutil.NewCluster(),
			wantErr: "cannot find where to push images in the target cluster",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TargetRegistryEndpoint(context.Background(), tt.cluster.Clients, tt.override)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
