//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferry-dev/ferry/imagecopy/registrytest"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/test/stack"
)

var imageStreamGVR = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}

// TestImageStreamMigration copies an application's pushed images from the source cluster's
// registry straight to the target's during the backups, and restores its image streams there:
//   - stage: every pushed tag and its history, by digest, into the mapped namespace's repository;
//   - final: nothing changed, so no blob is sent again;
//   - restore: the image streams come back with their metadata and spec (a stream following
//     another one restored after it), the tags resolve in the target registry to the same
//     digests, and a Deployment's image reference points at the target registry.
//
// The stack's image streams are CRDs: OpenShift's API server would compute their status from
// the pushes; here the test writes the source status as OpenShift would after `docker push`,
// and checks the target by resolving each tag where OpenShift would look it up (the target's
// internal registry, mapped namespace, stream, tag). ImageStreamTags cannot be CRD objects
// (their names hold a colon); the unit tests cover their restore.
func TestImageStreamMigration(t *testing.T) {
	// The base ferry-config; the namespace mapping is the backups' own.
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target

	ns := s.Namespace(t, "images")
	mapped := ns + "-new"
	t.Cleanup(func() { _ = dst.DeleteNamespace(context.Background(), mapped) })
	useSidecar(t, ctx, s, nil)
	mapping := []string{"--annotations", keys.NamespaceMapping + "=" + ns + ":" + mapped}
	// The target publishes its registry's external name, where the source pushes (OpenShift 4's
	// images.config.openshift.io status; discovery, not configuration).
	publishExternalRegistry(t, ctx, dst)

	// Pushed images: v1 twice (so it has history), and a manifest list.
	srcRegistry, dstRegistry := registrytest.At(src.RegistryFromHost), registrytest.At(dst.RegistryFromHost)
	v1Old, err := srcRegistry.PushImage(ns+"/web:v1", 2, 256<<10)
	require.NoError(t, err)
	v1, err := srcRegistry.PushImage(ns+"/web:v1", 3, 256<<10)
	require.NoError(t, err)
	multi, err := srcRegistry.PushIndex(ns+"/web:multi", 2, 2, 64<<10)
	require.NoError(t, err)
	repo := src.RegistryHost + "/" + ns + "/web"
	createImageStream(t, ctx, src, ns, "web", map[string]any{
		"lookupPolicy": map[string]any{"local": true},
		"tags":         []any{map[string]any{"name": "latest", "from": map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}}},
	}, map[string]any{
		"dockerImageRepository": repo,
		"tags": []any{
			tagEvents("v1", repo, v1, v1Old), tagEvents("latest", repo, v1), tagEvents("multi", repo, multi),
		},
	})
	// A stream of tags that follow web's: restored after web.
	createImageStream(t, ctx, src, ns, "tools", map[string]any{
		"tags": []any{map[string]any{"name": "stable", "from": map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}}},
	}, nil)
	create(t, ctx, src, deployment(ns, "web", 0, repo+"@"+v1))

	// Stage: the images go.
	stage, err := migrationBackup(t, ctx, src, "stage", ns, mapping...)
	require.NoError(t, err)
	st := imageCopyStatus(t, ctx, src, ns, "web")
	assert.Equal(t, string(stage.UID), st.ID)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, dst.RegistryHost+"/"+mapped+"/web", st.Target)
	assert.Equal(t, 3, st.Images, "v1, its older image, and the list; latest follows v1")
	assert.Equal(t, (2+1)+(3+1)+2*(2+1), st.BlobsSent, "every layer and config")
	assert.Equal(t, 1, stage.Status.BackupItemOperationsCompleted, "one operation: the stream with pushed images")
	for ref, want := range map[string]string{mapped + "/web:v1": v1, mapped + "/web@" + v1Old: v1Old, mapped + "/web:multi": multi} {
		got, err := dstRegistry.Digest(ref)
		require.NoError(t, err, ref)
		assert.Equal(t, want, got, "%s in the target registry", ref)
	}
	_, err = dstRegistry.Digest(mapped + "/web:latest")
	assert.Error(t, err, "a reference tag is not pushed (it is restored as a reference)")
	t.Logf("stage: %d images, %d blobs sent (%d bytes), %d skipped", st.Images, st.BlobsSent, st.BytesSent, st.BlobsSkipped)

	// Final: nothing changed, nothing is sent.
	final, err := migrationBackup(t, ctx, src, "final", ns, mapping...)
	require.NoError(t, err)
	again := imageCopyStatus(t, ctx, src, ns, "web")
	assert.Equal(t, string(final.UID), again.ID)
	assert.Equal(t, operation.PhaseCompleted, again.Phase, again.Message)
	assert.Zero(t, again.BlobsSent, "an unchanged stream sends zero blobs")
	assert.Equal(t, st.BlobsSent, again.BlobsSkipped)
	assert.Contains(t, describeBackup(t, ctx, src, final.Name), "Completed")

	// Restore on the target, into the mapped namespace.
	restoreOnTarget(t, ctx, s, final.Name, "images", "--namespace-mappings", ns+":"+mapped)

	web, err := dst.Dynamic.Resource(imageStreamGVR).Namespace(mapped).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "frontend", web.GetLabels()["tier"], "the stream's own labels")
	assert.Equal(t, "the web front end", web.GetAnnotations()["description"], "and annotations")
	for k := range web.GetAnnotations() {
		assert.False(t, keys.IsImageCopyKey(k), "copy annotation %s restored", k)
	}
	local, _, _ := unstructured.NestedBool(web.Object, "spec", "lookupPolicy", "local")
	assert.True(t, local, "and spec")
	// Where OpenShift resolves a pushed tag: the target's internal registry, the mapped namespace.
	internal := dst.RegistryHost
	for tag, want := range map[string]string{"v1": v1, "multi": multi} {
		got, err := dstRegistry.Digest(mapped + "/web:" + tag)
		require.NoError(t, err)
		assert.Equal(t, want, got, "the target stream's tag %s resolves by the same digest", tag)
	}
	tools, err := dst.Dynamic.Resource(imageStreamGVR).Namespace(mapped).Get(ctx, "tools", metav1.GetOptions{})
	require.NoError(t, err, "the stream following web was restored")
	tags, _, _ := unstructured.NestedSlice(tools.Object, "spec", "tags")
	require.Len(t, tags, 1)
	assert.Equal(t, "web:v1", tags[0].(map[string]any)["from"].(map[string]any)["name"])

	d := requireWorkload(t, ctx, dst, mapped, "web", 0)
	img := d.Spec.Template.Spec.Containers[0].Image
	assert.Equal(t, internal+"/"+mapped+"/web@"+v1, img, "the Deployment pulls from the target registry")
	got, err := dstRegistry.Digest(mapped + "/web@" + v1)
	require.NoError(t, err)
	assert.Equal(t, v1, got)
}

// publishExternalRegistry sets the target's images.config.openshift.io/cluster
// status.externalRegistryHostnames to its registry, as OpenShift does when the registry is
// exposed.
func publishExternalRegistry(t *testing.T, ctx context.Context, c *stack.Cluster) {
	t.Helper()
	cfg, err := c.Dynamic.Resource(stack.ImagesConfigGVR).Get(ctx, "cluster", metav1.GetOptions{})
	require.NoError(t, err)
	require.NoError(t, unstructured.SetNestedStringSlice(cfg.Object, []string{c.RegistryHost}, "status", "externalRegistryHostnames"))
	_, err = c.Dynamic.Resource(stack.ImagesConfigGVR).UpdateStatus(ctx, cfg, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// createImageStream creates a stream with spec and (through the status subresource) status.
func createImageStream(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string, spec, status map[string]any) {
	t.Helper()
	u := objectOf("image.openshift.io/v1", "ImageStream", ns, name, map[string]any{"spec": spec})
	u.SetLabels(map[string]string{"tier": "frontend"})
	u.SetAnnotations(map[string]string{"description": "the web front end"})
	created, err := c.Dynamic.Resource(imageStreamGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	require.NoError(t, err)
	if status == nil {
		return
	}
	created.Object["status"] = status
	_, err = c.Dynamic.Resource(imageStreamGVR).Namespace(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// tagEvents is a status tag whose history is the digests, newest first, in repo.
func tagEvents(tag, repo string, digests ...string) map[string]any {
	var items []any
	for i, d := range digests {
		items = append(items, map[string]any{
			"created": time.Now().Add(-time.Duration(i) * time.Hour).UTC().Format(time.RFC3339), "dockerImageReference": repo + "@" + d,
			"image": d, "generation": int64(1),
		})
	}
	return map[string]any{"tag": tag, "items": items}
}

// imageCopyStatus reads the sidecar's report on a source image stream.
func imageCopyStatus(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string) *operation.ImageCopyStatus {
	t.Helper()
	u, err := c.Dynamic.Resource(imageStreamGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	st, err := operation.ParseImageCopyStatus(u.GetAnnotations())
	require.NoError(t, err)
	require.NotNil(t, st, "ImageStream %s/%s has no image copy status", ns, name)
	return st
}
