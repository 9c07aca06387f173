package restoreitemaction

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

const isDigest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func specTag(name, kind, ns, from string) map[string]any {
	ref := map[string]any{"kind": kind, "name": from}
	if ns != "" {
		ref["namespace"] = ns
	}
	return map[string]any{"name": name, "from": ref}
}

// backedUpStream is app/web as the backup holds it: stamped by the source-info action, with a
// stale copy status, labels, a lookup policy and spec tags of every kind.
func backedUpStream(tags ...any) *unstructured.Unstructured {
	u := testutil.Object("image.openshift.io/v1", "ImageStream", "app", "web", map[string]any{
		"spec.lookupPolicy.local":      true,
		"spec.tags":                    tags,
		"status.dockerImageRepository": srcRegistry + "/app/web",
		"status.tags": []any{map[string]any{"tag": "v1", "items": []any{map[string]any{
			"dockerImageReference": srcRegistry + "/app/web@" + isDigest, "image": isDigest,
		}}}},
	})
	u.SetLabels(map[string]string{"app": "web"})
	u.SetAnnotations(map[string]string{
		keys.SourceRegistry: srcRegistry, keys.SourceServerVersion: "1.33", keys.BackupMigration: "final",
		keys.ImageCopyStatus: `{"id":"x","phase":"Completed"}`, "description": "the web front end",
	})
	return u
}

func targetWith(objs ...*unstructured.Unstructured) *testutil.Cluster {
	dyn := []runtime.Object{testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{"status.internalRegistryHostname": tgtRegistry})}
	for _, o := range objs {
		dyn = append(dyn, o)
	}
	return testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(dyn...))
}

func TestImageStreamActionRewritesAndOrders(t *testing.T) {
	stream := backedUpStream(
		specTag("latest", "ImageStreamTag", "", "web:v1"),
		specTag("base", "ImageStreamTag", "app", "base:2"),
		specTag("builder", "ImageStreamTag", "openshift", "nodejs:18"),
		specTag("pinned", "DockerImage", "", srcRegistry+"/app/web@"+isDigest),
		specTag("ext", "DockerImage", "", "quay.io/org/tool:1"),
		specTag("img", "ImageStreamImage", "", "base@"+isDigest),
	)
	log, _ := testutil.NewLogger()
	a := NewImageStreamAction(log, targetWith().Clients, configOf(t, nil))
	o, err := a.Execute(inputU(stream, restoreWith("app", "app2")))
	require.NoError(t, err)
	assert.False(t, o.SkipRestore, "the stream object itself is restored, with its metadata")
	got := out(t, o)

	assert.Equal(t, map[string]string{"description": "the web front end"}, got.GetAnnotations(), "copy state and source stamps are dropped")
	assert.Equal(t, map[string]string{"app": "web"}, got.GetLabels())
	local, _, _ := unstructured.NestedBool(got.Object, "spec", "lookupPolicy", "local")
	assert.True(t, local)
	tags, _, _ := unstructured.NestedSlice(got.Object, "spec", "tags")
	from := func(i int) map[string]any { return tags[i].(map[string]any)["from"].(map[string]any) }
	assert.Equal(t, map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}, from(0), "same-stream reference unchanged")
	assert.Equal(t, "app2", from(1)["namespace"], "a reference into the restored namespace follows the mapping")
	assert.Equal(t, "openshift", from(2)["namespace"], "an unmapped namespace stays")
	assert.Equal(t, tgtRegistry+"/app2/web@"+isDigest, from(3)["name"], "an internal image is the same digest in the target registry")
	assert.Equal(t, "quay.io/org/tool:1", from(4)["name"], "external images stay references")
	assert.Equal(t, map[string]any{"kind": "ImageStreamImage", "name": "base@" + isDigest}, from(5))
	status, _, _ := unstructured.NestedFieldCopy(got.Object, "status")
	assert.Equal(t, stream.Object["status"], status, "status is the API server's to compute")

	assert.True(t, o.WaitForAdditionalItems)
	assert.Equal(t, []velero.ResourceIdentifier{{GroupResource: imageStreamsGR, Namespace: "app", Name: "base"}}, o.AdditionalItems,
		"the other stream of the namespace it follows is restored first (once); other namespaces are not waited for")
}

func TestImageStreamActionAdoptsTheStreamTheCopyCreated(t *testing.T) {
	created := func(ann map[string]string) *unstructured.Unstructured {
		u := testutil.Object("image.openshift.io/v1", "ImageStream", "app2", "web", map[string]any{
			"status.tags": []any{map[string]any{"tag": "v1", "items": []any{map[string]any{"image": isDigest}}}},
		})
		u.SetAnnotations(ann)
		return u
	}
	tests := []struct {
		name      string
		live      *unstructured.Unstructured
		tags      []any
		wantAdopt bool
		wantLog   string
	}{
		{name: "created by the image copy: the backed-up stream replaces its metadata and spec", live: created(map[string]string{keys.ImageCopyCreated: "uid-1", keys.PairedWith: "src-uid"}), wantAdopt: true},
		{name: "someone else's stream is Velero's to handle", live: created(map[string]string{"owner": "someone"})},
		{
			name: "ferry's, but following streams not yet restored: Velero restores those first",
			live: created(map[string]string{keys.ImageCopyCreated: "uid-1"}), tags: []any{specTag("base", "ImageStreamTag", "", "base:2")},
			wantLog: "--existing-resource-policy=update",
		},
		{name: "no stream in the target yet: Velero creates it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []*unstructured.Unstructured
			if tc.live != nil {
				objs = append(objs, tc.live.DeepCopy())
			}
			target := targetWith(objs...)
			log, logs := testutil.NewLogger()
			a := NewImageStreamAction(log, target.Clients, configOf(t, nil))
			restore := restoreWith("app", "app2")
			o, err := a.Execute(inputU(backedUpStream(tc.tags...), restore))
			require.NoError(t, err)
			assert.Equal(t, tc.wantAdopt, o.SkipRestore, "an adopted stream is not created again")
			if tc.wantLog != "" {
				assert.Contains(t, logs.String(), tc.wantLog)
			}
			if tc.live == nil {
				return
			}
			live, err := target.Dynamic.Resource(imageStreamsGR.WithVersion("v1")).Namespace("app2").Get(context.Background(), "web", metav1.GetOptions{})
			require.NoError(t, err)
			if !tc.wantAdopt {
				assert.Equal(t, tc.live.GetAnnotations(), live.GetAnnotations(), "left as it was")
				return
			}
			assert.Equal(t, map[string]string{"description": "the web front end", keys.PairedWith: "src-uid"}, live.GetAnnotations(),
				"the created-by marker is gone; the pairing stays, so later stage copies from the same stream may still push")
			assert.Equal(t, map[string]string{"app": "web", velerov1.BackupNameLabel: "b1", velerov1.RestoreNameLabel: "r1"}, live.GetLabels())
			local, _, _ := unstructured.NestedBool(live.Object, "spec", "lookupPolicy", "local")
			assert.True(t, local, "the backed-up spec is applied")
			tags, _, _ := unstructured.NestedSlice(live.Object, "status", "tags")
			assert.Len(t, tags, 1, "the status the registry push made is kept")
		})
	}
}

func TestImageStreamActionOnPlainKubernetes(t *testing.T) {
	log, _ := testutil.NewLogger()
	a := NewImageStreamAction(log, testutil.NewCluster().Clients, configOf(t, nil))
	o, err := a.Execute(inputU(backedUpStream(specTag("pinned", "DockerImage", "", srcRegistry+"/app/web@"+isDigest)), restoreWith()))
	require.NoError(t, err)
	tags, _, _ := unstructured.NestedSlice(out(t, o).Object, "spec", "tags")
	assert.Equal(t, srcRegistry+"/app/web@"+isDigest, tags[0].(map[string]any)["from"].(map[string]any)["name"],
		"no target registry known: references stay")
}

func TestReferentsExist(t *testing.T) {
	base := testutil.Object("image.openshift.io/v1", "ImageStream", "app2", "base", nil)
	target := targetWith(base)
	items := []velero.ResourceIdentifier{{GroupResource: imageStreamsGR, Namespace: "app", Name: "base"}}
	ready, err := referentsExist(context.Background(), target.Clients, items, restoreWith("app", "app2"))
	require.NoError(t, err)
	assert.True(t, ready, "found in the mapped namespace")
	ready, err = referentsExist(context.Background(), target.Clients, items, restoreWith())
	require.NoError(t, err)
	assert.False(t, ready, "not yet in namespace app")
	ready, err = referentsExist(context.Background(), target.Clients, nil, restoreWith())
	require.NoError(t, err)
	assert.True(t, ready, "nothing to wait for")
}

func TestImageStreamActionWarnsWhenOVPCopiedImagesToo(t *testing.T) {
	stream := backedUpStream()
	ann := stream.GetAnnotations()
	ann[keys.OVPMigrationRegistry] = "bsl://"
	stream.SetAnnotations(ann)
	log, logs := testutil.NewLogger()
	_, err := NewImageStreamAction(log, targetWith().Clients, configOf(t, nil)).Execute(inputU(stream, restoreWith()))
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "level=warning")
	assert.Contains(t, logs.String(), "spec.backupImages: false")
	assert.Contains(t, logs.String(), "name=web", "the warning names the stream")

	logs.Reset()
	_, err = NewImageStreamAction(log, targetWith().Clients, configOf(t, nil)).Execute(inputU(backedUpStream(), restoreWith()))
	require.NoError(t, err)
	assert.NotContains(t, logs.String(), "level=warning")
}
