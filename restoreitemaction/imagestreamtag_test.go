package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

// istag builds the backed-up ImageStreamTag app/name; from is nil for a pushed tag.
func istag(name string, from map[string]any) *unstructured.Unstructured {
	fields := map[string]any{"image.dockerImageReference": srcRegistry + "/app/web@" + isDigest}
	if from != nil {
		fields["tag.name"] = name
		fields["tag.from"] = from
	}
	u := testutil.Object("image.openshift.io/v1", "ImageStreamTag", "app", name, fields)
	u.SetAnnotations(map[string]string{keys.SourceRegistry: srcRegistry})
	return u
}

func tagsOnly(mapping ...string) *velerov1.Restore {
	return builder.ForRestore("velero", "r1").Backup("b1").IncludedResources("imagestreamtags.image.openshift.io").NamespaceMappings(mapping...).Result()
}

func TestImageStreamTagAction(t *testing.T) {
	tests := []struct {
		name      string
		tag       *unstructured.Unstructured
		restore   *velerov1.Restore
		wantSkip  bool
		wantFrom  map[string]any
		wantAfter []velero.ResourceIdentifier
	}{
		{
			name:     "restoring image streams too: the stream carries the tag",
			tag:      istag("web:latest", map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}),
			restore:  restoreWith("app", "app2"),
			wantSkip: true,
		},
		{
			name:     "tags only: a pushed tag is the image copy's",
			tag:      istag("web:v1", nil),
			restore:  tagsOnly(),
			wantSkip: true,
		},
		{
			name:      "tags only: a reference waits for the tag it follows, same stream",
			tag:       istag("web:latest", map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}),
			restore:   tagsOnly("app", "app2"),
			wantFrom:  map[string]any{"kind": "ImageStreamTag", "name": "web:v1"},
			wantAfter: []velero.ResourceIdentifier{{GroupResource: imageStreamTagsGR, Namespace: "app", Name: "web:v1"}},
		},
		{
			name:      "tags only: another stream's tag, namespace given, is mapped and waited for",
			tag:       istag("web:base", map[string]any{"kind": "ImageStreamTag", "namespace": "app", "name": "base:2"}),
			restore:   tagsOnly("app", "app2"),
			wantFrom:  map[string]any{"kind": "ImageStreamTag", "namespace": "app2", "name": "base:2"},
			wantAfter: []velero.ResourceIdentifier{{GroupResource: imageStreamTagsGR, Namespace: "app", Name: "base:2"}},
		},
		{
			name:     "tags only: another namespace's tag is not waited for",
			tag:      istag("web:builder", map[string]any{"kind": "ImageStreamTag", "namespace": "openshift", "name": "nodejs:18"}),
			restore:  tagsOnly("app", "app2"),
			wantFrom: map[string]any{"kind": "ImageStreamTag", "namespace": "openshift", "name": "nodejs:18"},
		},
		{
			name:     "tags only: an internal image follows the registry and namespace mapping",
			tag:      istag("web:pinned", map[string]any{"kind": "DockerImage", "name": srcRegistry + "/app/web@" + isDigest}),
			restore:  tagsOnly("app", "app2"),
			wantFrom: map[string]any{"kind": "DockerImage", "name": tgtRegistry + "/app2/web@" + isDigest},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			a := NewImageStreamTagAction(log, targetWith().Clients, configOf(t, nil))
			o, err := a.Execute(inputU(tc.tag, tc.restore))
			require.NoError(t, err)
			assert.Equal(t, tc.wantSkip, o.SkipRestore)
			if tc.wantSkip {
				return
			}
			got := out(t, o)
			from, _, _ := unstructured.NestedMap(got.Object, "tag", "from")
			assert.Equal(t, tc.wantFrom, from)
			assert.NotContains(t, got.GetAnnotations(), keys.SourceRegistry)
			assert.Equal(t, tc.wantAfter, o.AdditionalItems)
			assert.Equal(t, len(tc.wantAfter) > 0, o.WaitForAdditionalItems)
		})
	}
}

func TestRestoresImageStreams(t *testing.T) {
	r := func(included, excluded []string) *velerov1.Restore {
		return builder.ForRestore("velero", "r").IncludedResources(included...).ExcludedResources(excluded...).Result()
	}
	assert.True(t, restoresImageStreams(r(nil, nil)), "everything by default")
	assert.True(t, restoresImageStreams(r([]string{"*"}, nil)))
	assert.True(t, restoresImageStreams(r([]string{"imagestreams", "imagestreamtags"}, nil)))
	assert.False(t, restoresImageStreams(r([]string{"imagestreamtags.image.openshift.io"}, nil)))
	assert.False(t, restoresImageStreams(r(nil, []string{"imagestreams.image.openshift.io"})))
	assert.False(t, restoresImageStreams(r(nil, []string{"IS"})))
}
