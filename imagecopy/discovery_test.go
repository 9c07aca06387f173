package imagecopy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestInternalRegistry(t *testing.T) {
	imageConfig := testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname": "image-registry.openshift-image-registry.svc:5000",
	})
	apiserverConfig := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "openshift-apiserver", Name: "config"},
		Data:       map[string]string{"config.yaml": "imagePolicyConfig:\n  internalRegistryHostname: image-registry.openshift-image-registry.svc:5000\n"},
	}
	ocp3Service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "docker-registry"},
		Spec:       corev1.ServiceSpec{ClusterIP: "172.30.1.1", Ports: []corev1.ServicePort{{Port: 5000}}},
	}
	stream := testutil.Object("image.openshift.io/v1", "ImageStream", "openshift", "ruby", map[string]any{
		"status.dockerImageRepository": "docker-registry.default.svc:5000/openshift/ruby",
	})
	tests := []struct {
		name     string
		opts     []testutil.Option
		override string
		want     string
	}{
		{name: "plain Kubernetes has none", opts: nil, want: ""},
		{name: "plain Kubernetes ignores an unrelated docker-registry Service", opts: []testutil.Option{testutil.WithObjects(ocp3Service)}, want: ""},
		{name: "the override wins", opts: []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig)}, override: "registry.example:443", want: "registry.example:443"},
		{name: "OpenShift 4 image config", opts: []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig)}, want: "image-registry.openshift-image-registry.svc:5000"},
		{name: "OpenShift 4 apiserver config", opts: []testutil.Option{testutil.OpenShift(), testutil.WithObjects(apiserverConfig)}, want: "image-registry.openshift-image-registry.svc:5000"},
		{name: "OpenShift 3 docker-registry Service", opts: []testutil.Option{testutil.OpenShift(), testutil.WithObjects(ocp3Service)}, want: "172.30.1.1:5000"},
		{name: "image streams in the openshift namespace", opts: []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(stream)}, want: "docker-registry.default.svc:5000"},
		{name: "OpenShift with the registry removed", opts: []testutil.Option{testutil.OpenShift()}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.NewCluster(tc.opts...)
			got, err := InternalRegistry(context.Background(), c.Clients, tc.override)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
