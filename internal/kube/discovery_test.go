package kube

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery/cached/memory"
	fakediscovery "k8s.io/client-go/discovery/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestAPIsHas(t *testing.T) {
	fake := kubefake.NewSimpleClientset().Discovery().(*fakediscovery.FakeDiscovery)
	fake.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "pods"}}},
		{GroupVersion: RouteGV.String(), APIResources: []metav1.APIResource{{Name: "routes"}}},
	}
	// Both the plain client and the memory-cached one NewClients uses: a group the cluster does
	// not serve is "no", not an error (plain Kubernetes has no OpenShift groups).
	for name, apis := range map[string]*APIs{"plain": NewAPIs(fake), "memory-cached": NewAPIs(memory.NewMemCacheClient(fake))} {
		t.Run(name, func(t *testing.T) {
			ok, err := apis.Has(RouteGV, "routes")
			require.NoError(t, err)
			assert.True(t, ok)
			ok, err = apis.Has(RouteGV, "routes/custom-host")
			require.NoError(t, err)
			assert.False(t, ok)
			ok, err = apis.Has(SecurityGV, "securitycontextconstraints")
			require.NoError(t, err, "an absent group is an answer")
			assert.False(t, ok)
		})
	}
}

func TestServerVersion(t *testing.T) {
	fake := kubefake.NewSimpleClientset().Discovery().(*fakediscovery.FakeDiscovery)
	for _, tc := range []struct {
		info version.Info
		want string
	}{
		{version.Info{Major: "1", Minor: "33"}, "1.33"},
		{version.Info{Major: "1", Minor: "11+", GitVersion: "v1.11.0+d4cacc0"}, "1.11"},
		{version.Info{GitVersion: "v1.29.7+6abe8a1"}, "1.29"},
	} {
		fake.FakedServerVersion = &tc.info
		got, err := ServerVersion(fake)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
	fake.FakedServerVersion = &version.Info{}
	_, err := ServerVersion(fake)
	assert.Error(t, err)
}
