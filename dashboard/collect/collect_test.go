package collect

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/keys"
)

// object builds an unstructured object of a resource the collector reads.
func object(apiVersion, kind, ns, name string, ann map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetAnnotations(ann)
	return u
}

func claim(ns, name string) *unstructured.Unstructured {
	return object("v1", "PersistentVolumeClaim", ns, name, map[string]string{keys.TransferID: "uid-s1", keys.TransferBackup: "s1"})
}

func namespace(name string) *unstructured.Unstructured {
	return object("v1", "Namespace", "", name, nil)
}

// rights says what the viewer may do: "verb resource namespace" ("" namespace: cluster-wide).
type rights map[string]bool

// cluster is a fake API server: objects, what it serves, and the viewer's rights (checked by
// SelfSubjectAccessReview and by every list, as the API server does).
func cluster(t *testing.T, openshift bool, r *atomic.Pointer[rights], objs ...runtime.Object) (*kubefake.Clientset, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	kube := kubefake.NewClientset()
	if openshift {
		kube.Resources = []*metav1.APIResourceList{{GroupVersion: "image.openshift.io/v1", APIResources: []metav1.APIResource{{Name: "imagestreams", Namespaced: true}}}}
	}
	allowed := func(verb, resource, ns string) bool { return (*r.Load())[verb+" "+resource+" "+ns] }
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rev := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		ra := rev.Spec.ResourceAttributes
		rev.Status.Allowed = allowed(ra.Verb, ra.Resource, ra.Namespace)
		return true, rev, nil
	})
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		Backups: "BackupList", PVCs: "PersistentVolumeClaimList", Events: "EventList", ImageStreams: "ImageStreamList", namespaces: "NamespaceList",
	}, objs...)
	dyn.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		res := a.GetResource()
		if allowed("list", res.Resource, "") || allowed("list", res.Resource, a.GetNamespace()) {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(res.GroupResource(), "", nil)
	})
	return kube, dyn
}

func grant(list ...string) *atomic.Pointer[rights] {
	r := rights{}
	for _, l := range list {
		r[l] = true
	}
	var p atomic.Pointer[rights]
	p.Store(&r)
	return &p
}

// everywhere gives list and watch on the per-namespace resources cluster-wide.
var everywhere = []string{
	"list persistentvolumeclaims ", "watch persistentvolumeclaims ", "list events ", "watch events ",
	"list imagestreams ", "watch imagestreams ", "list backups velero",
}

func names(in view.Input) []string {
	var out []string
	for _, p := range in.PVCs {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	for _, b := range in.Backups {
		out = append(out, "backup "+b.Name)
	}
	for _, s := range in.ImageStreams {
		out = append(out, "imagestream "+s.Namespace+"/"+s.Name)
	}
	return out
}

func run(t *testing.T, c *Collector) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return c.Synced(), nil }))
}

func TestCollect(t *testing.T) {
	objs := []runtime.Object{
		claim("app", "data"), claim("other", "db"), namespace("app"), namespace("other"),
		object("velero.io/v1", "Backup", "velero", "s1", nil),
		object("image.openshift.io/v1", "ImageStream", "app", "web", map[string]string{keys.ImageCopyID: "x"}),
	}
	tests := []struct {
		name       string
		openshift  bool
		rights     []string
		opts       Options
		want       []string
		wantNotice []string
	}{
		{name: "cluster-wide viewer sees everything", openshift: true, rights: everywhere,
			want: []string{"app/data", "other/db", "backup s1", "imagestream app/web"}},
		{name: "plain Kubernetes: no image streams, and a notice says so", rights: everywhere,
			want:       []string{"app/data", "other/db", "backup s1"},
			wantNotice: []string{"This cluster does not serve imagestreams.image.openshift.io: none are shown."}},
		{name: "view on one namespace: that namespace only, notices for the rest", openshift: true,
			rights: []string{"list persistentvolumeclaims app", "list events app", "list imagestreams app"},
			opts:   Options{DefaultNamespace: "app"},
			want:   []string{"app/data", "imagestream app/web"},
			wantNotice: []string{
				"You may not list namespaces (forbidden): showing namespace app only; name others with -n.",
				"You may not list backups.velero.io in namespace velero: they are not shown.",
			}},
		{name: "namespaces named with -n, one of them refused", openshift: true,
			rights: []string{"list persistentvolumeclaims app", "list events app", "list imagestreams app", "list imagestreams other", "list events other", "list backups velero"},
			opts:   Options{Namespaces: []string{"app", "other"}},
			want:   []string{"app/data", "backup s1", "imagestream app/web"},
			wantNotice: []string{
				"You may not list persistentvolumeclaims in namespace other: they are not shown.",
			}},
		{name: "namespaces the viewer may list are the scope", openshift: true,
			rights: []string{"list namespaces ", "list persistentvolumeclaims app", "list persistentvolumeclaims other", "list events app", "list events other", "list imagestreams app", "list imagestreams other", "list backups velero"},
			want:   []string{"app/data", "other/db", "backup s1", "imagestream app/web"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kube, dyn := cluster(t, tc.openshift, grant(tc.rights...), objs...)
			tc.opts.VeleroNamespace = "velero"
			c := New(kube, dyn, tc.opts)
			run(t, c)
			in := c.Snapshot(time.Now())
			assert.ElementsMatch(t, tc.want, names(in))
			assert.ElementsMatch(t, tc.wantNotice, in.Notices)
		})
	}
}

// TestCollectSeesRightsGrantedLater: a refused list is retried, so a RoleBinding made while
// the dashboard runs shows its objects (and the notice goes) without a restart.
func TestCollectSeesRightsGrantedLater(t *testing.T) {
	r := grant("list backups velero", "list events app", "list namespaces ")
	kube, dyn := cluster(t, false, r, claim("app", "data"), namespace("app"))
	c := New(kube, dyn, Options{VeleroNamespace: "velero"})
	run(t, c)
	in := c.Snapshot(time.Now())
	assert.Empty(t, in.PVCs)
	assert.Contains(t, in.Notices, "You may not list persistentvolumeclaims in namespace app: they are not shown.")

	r.Store(&rights{"list backups velero": true, "list events app": true, "list namespaces ": true, "list persistentvolumeclaims app": true})
	select {
	case <-c.Changed():
	case <-time.After(10 * time.Second):
	}
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(c.Snapshot(time.Now()).PVCs) == 1, nil
	}))
	assert.Equal(t, []string{"This cluster does not serve imagestreams.image.openshift.io: none are shown."}, c.Snapshot(time.Now()).Notices)
}

// TestCollectListsOnlyPVCEvents: a cluster's other Events are never shown, so never listed.
func TestCollectListsOnlyPVCEvents(t *testing.T) {
	kube, dyn := cluster(t, false, grant(everywhere...))
	run(t, New(kube, dyn, Options{VeleroNamespace: "velero"}))
	var selectors []string
	for _, a := range dyn.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok && a.GetResource() == Events {
			selectors = append(selectors, l.GetListRestrictions().Fields.String())
		}
	}
	require.NotEmpty(t, selectors)
	for _, s := range selectors {
		assert.Equal(t, "involvedObject.kind=PersistentVolumeClaim", s)
	}
}

// TestCollectWatches: a change after the first list reaches the snapshot and Changed.
func TestCollectWatches(t *testing.T) {
	kube, dyn := cluster(t, false, grant(everywhere...))
	c := New(kube, dyn, Options{VeleroNamespace: "velero"})
	run(t, c)
	for len(c.Changed()) > 0 {
		<-c.Changed()
	}
	_, err := dyn.Resource(PVCs).Namespace("app").Create(context.Background(), claim("app", "new"), metav1.CreateOptions{})
	require.NoError(t, err)
	select {
	case <-c.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no change notified")
	}
	require.NoError(t, wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(c.Snapshot(time.Now()).PVCs) == 1, nil
	}))
}
