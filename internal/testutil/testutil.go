// Package testutil builds fixtures for ferry's unit tests: fake clients of a cluster with or
// without the OpenShift APIs, a logger whose output a test can read, and conversions. Fakes are
// for unit tests only; capabilities are proven against real programs elsewhere.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	secfake "github.com/openshift/client-go/security/clientset/versioned/fake"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferry-dev/ferry/internal/kube"
)

// VeleroNamespace is the namespace fake clients report as Velero's.
const VeleroNamespace = "velero"

// Cluster is a fake cluster for unit tests.
type Cluster struct {
	Kube      *kubefake.Clientset
	Security  *secfake.Clientset
	Dynamic   *dynfake.FakeDynamicClient
	Discovery *fakediscovery.FakeDiscovery
	Clients   *kube.Clients
}

// Option shapes a fake cluster.
type Option func(*options)

type options struct {
	kubeObjects     []runtime.Object
	securityObjects []runtime.Object
	dynamicObjects  []runtime.Object
	openShift       bool
	version         string
	tokens          map[string]bool
}

// WithObjects seeds core Kubernetes objects.
func WithObjects(objs ...runtime.Object) Option {
	return func(o *options) { o.kubeObjects = append(o.kubeObjects, objs...) }
}

// WithSecurityObjects seeds OpenShift security objects (SCCs) and serves the security API.
func WithSecurityObjects(objs ...runtime.Object) Option {
	return func(o *options) { o.securityObjects = append(o.securityObjects, objs...); o.openShift = true }
}

// WithDynamicObjects seeds unstructured objects for the dynamic client.
func WithDynamicObjects(objs ...runtime.Object) Option {
	return func(o *options) { o.dynamicObjects = append(o.dynamicObjects, objs...) }
}

// TokensFor makes the API server issue tokens (TokenRequest) for these service accounts,
// "namespace/name" each: the token is "token-of-<namespace>/<name>-for-<seconds>s". Any other
// account is not found.
func TokensFor(accounts ...string) Option {
	return func(o *options) {
		if o.tokens == nil {
			o.tokens = map[string]bool{}
		}
		for _, a := range accounts {
			o.tokens[a] = true
		}
	}
}

// OpenShift makes discovery serve the OpenShift API groups.
func OpenShift() Option { return func(o *options) { o.openShift = true } }

// ServerVersion sets what discovery reports, e.g. "1.33".
func ServerVersion(v string) Option { return func(o *options) { o.version = v } }

// NewCluster builds a fake cluster. Without OpenShift() its discovery serves only core groups,
// as plain Kubernetes does.
func NewCluster(opts ...Option) *Cluster {
	o := &options{version: "1.33"}
	for _, opt := range opts {
		opt(o)
	}
	k := kubefake.NewSimpleClientset(o.kubeObjects...)
	// Seeded through Create: the fake tracker would otherwise file SCCs under a guessed plural
	// ("securitycontextconstraintses") that List never reads.
	sec := secfake.NewSimpleClientset()
	for _, obj := range o.securityObjects {
		scc, ok := obj.(*securityv1.SecurityContextConstraints)
		if !ok {
			panic(fmt.Sprintf("WithSecurityObjects: unsupported %T", obj))
		}
		if _, err := sec.SecurityV1().SecurityContextConstraints().Create(context.Background(), scc, metav1.CreateOptions{}); err != nil {
			panic(err)
		}
	}
	scheme := runtime.NewScheme()
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, listKinds, o.dynamicObjects...)
	disc := k.Discovery().(*fakediscovery.FakeDiscovery)
	disc.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "persistentvolumeclaims", Namespaced: true}, {Name: "pods", Namespaced: true}}},
	}
	if o.openShift {
		disc.Resources = append(disc.Resources, openShiftResources...)
	}
	major, minor, _ := cut(o.version)
	disc.FakedServerVersion = &version.Info{Major: major, Minor: minor, GitVersion: "v" + o.version + ".0"}
	k.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		name := a.(k8stesting.CreateActionImpl).Name
		if !o.tokens[a.GetNamespace()+"/"+name] {
			return true, nil, apierrors.NewNotFound(corev1.Resource("serviceaccounts"), name)
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		var seconds int64
		if tr.Spec.ExpirationSeconds != nil {
			seconds = *tr.Spec.ExpirationSeconds
		}
		tr.Status.Token = fmt.Sprintf("token-of-%s/%s-for-%ds", a.GetNamespace(), name, seconds)
		return true, tr, nil
	})
	c := &Cluster{Kube: k, Security: sec, Dynamic: dyn, Discovery: disc}
	c.Clients = &kube.Clients{Kube: k, Security: sec, Dynamic: dyn, Discovery: disc, Namespace: VeleroNamespace, APIs: kube.NewAPIs(disc)}
	return c
}

var openShiftResources = []*metav1.APIResourceList{
	{GroupVersion: kube.RouteGV.String(), APIResources: []metav1.APIResource{{Name: "routes", Namespaced: true, Kind: "Route"}}},
	{GroupVersion: kube.SecurityGV.String(), APIResources: []metav1.APIResource{{Name: "securitycontextconstraints", Kind: "SecurityContextConstraints"}}},
	{GroupVersion: kube.ImageGV.String(), APIResources: []metav1.APIResource{
		{Name: "imagestreams", Namespaced: true, Kind: "ImageStream"},
		{Name: "imagestreamtags", Namespaced: true, Kind: "ImageStreamTag"},
	}},
	{GroupVersion: kube.AppsGV.String(), APIResources: []metav1.APIResource{{Name: "deploymentconfigs", Namespaced: true, Kind: "DeploymentConfig"}}},
	{GroupVersion: kube.BuildGV.String(), APIResources: []metav1.APIResource{{Name: "buildconfigs", Namespaced: true, Kind: "BuildConfig"}}},
	{GroupVersion: kube.ConfigGV.String(), APIResources: []metav1.APIResource{{Name: "images", Kind: "Image"}}},
}

// listKinds tells the fake dynamic client the list kind of each resource tests use.
var listKinds = map[schema.GroupVersionResource]string{
	{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}:     "ImageStreamList",
	{Group: "image.openshift.io", Version: "v1", Resource: "imagestreamtags"}:  "ImageStreamTagList",
	{Group: "config.openshift.io", Version: "v1", Resource: "images"}:          "ImageList",
	{Group: "route.openshift.io", Version: "v1", Resource: "routes"}:           "RouteList",
	{Group: "apps", Version: "v1", Resource: "deployments"}:                    "DeploymentList",
	{Group: "apps", Version: "v1", Resource: "statefulsets"}:                   "StatefulSetList",
	{Group: "apps", Version: "v1", Resource: "daemonsets"}:                     "DaemonSetList",
	{Group: "apps", Version: "v1", Resource: "replicasets"}:                    "ReplicaSetList",
	{Version: "v1", Resource: "replicationcontrollers"}:                        "ReplicationControllerList",
	{Group: "batch", Version: "v1", Resource: "cronjobs"}:                      "CronJobList",
	{Group: "batch", Version: "v1", Resource: "jobs"}:                          "JobList",
	{Group: "apps.openshift.io", Version: "v1", Resource: "deploymentconfigs"}: "DeploymentConfigList",
	{Version: "v1", Resource: "persistentvolumes"}:                             "PersistentVolumeList",
	{Group: "velero.io", Version: "v1", Resource: "backups"}:                   "BackupList",
	{Group: "velero.io", Version: "v1", Resource: "deletebackuprequests"}:      "DeleteBackupRequestList",
}

func cut(v string) (string, string, bool) {
	for i := 0; i < len(v); i++ {
		if v[i] == '.' {
			return v[:i], v[i+1:], true
		}
	}
	return v, "", false
}

// NewLogger returns a logger and the buffer it writes to, so a test can assert that a log line
// names the object it is about.
func NewLogger() (logrus.FieldLogger, *bytes.Buffer) {
	buf := &bytes.Buffer{}
	l := logrus.New()
	l.Out = buf
	l.Level = logrus.DebugLevel
	return l, buf
}

// Unstructured converts a typed object (with TypeMeta set) to unstructured.
func Unstructured(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	return &unstructured.Unstructured{Object: m}
}

// FromUnstructured converts back into out.
func FromUnstructured(t testing.TB, u runtime.Unstructured, out any) {
	t.Helper()
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), out))
}

// Object builds an unstructured object of any kind, for kinds ferry has no typed fixtures for
// (OpenShift objects in unit tests). fields are set with unstructured.SetNestedField paths
// separated by dots.
func Object(apiVersion, kind, namespace, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	for path, v := range fields {
		if err := unstructured.SetNestedField(u.Object, runtime.DeepCopyJSONValue(v), splitPath(path)...); err != nil {
			panic(err)
		}
	}
	return u
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}
