package imagecopy

import (
	"strings"
	"testing"

	imagev1 "github.com/openshift/api/image/v1"
	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

const (
	internal = "image-registry.openshift-image-registry.svc:5000"
	public   = "default-route-openshift-image-registry.apps.example.com"
	dA       = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB       = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dC       = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// stream builds an image stream app/web from spec tags and status tags.
func stream(spec []imagev1.TagReference, status ...imagev1.NamedTagEventList) *imagev1.ImageStream {
	is := &imagev1.ImageStream{}
	is.Namespace, is.Name = "app", "web"
	is.Spec.Tags = spec
	is.Status.Tags = status
	return is
}

// history builds a status tag whose items are the given references (newest first); the digest is
// taken from the reference.
func history(tag string, refs ...string) imagev1.NamedTagEventList {
	l := imagev1.NamedTagEventList{Tag: tag}
	for _, r := range refs {
		_, d, _ := strings.Cut(r, "@")
		l.Items = append(l.Items, imagev1.TagEvent{DockerImageReference: r, Image: d})
	}
	return l
}

func from(kind, name string) imagev1.TagReference {
	return imagev1.TagReference{Name: "alias", From: &corev1.ObjectReference{Kind: kind, Name: name}}
}

func TestPlan(t *testing.T) {
	repo := internal + "/app/web"
	tests := []struct {
		name     string
		is       *imagev1.ImageStream
		want     []string // Destination in "target/app/web" : Source
		problems []string
	}{
		{
			name: "a pushed tag goes as the tag, its history by digest, history first",
			is:   stream(nil, history("v1", repo+"@"+dA, repo+"@"+dB)),
			want: []string{"target/app/web@" + dB + " : " + repo + "@" + dB, "target/app/web:v1 : " + repo + "@" + dA},
		},
		{
			name: "external images are left as references",
			is:   stream(nil, history("ext", "quay.io/org/tool@"+dA), history("v1", repo+"@"+dB)),
			want: []string{"target/app/web:v1 : " + repo + "@" + dB},
		},
		{
			name: "a tag following another tag is copied by digest, never as an implied :latest",
			is: stream([]imagev1.TagReference{from("ImageStreamTag", "web:v1")},
				history("alias", repo+"@"+dA), history("v1", repo+"@"+dA)),
			want: []string{"target/app/web:v1 : " + repo + "@" + dA},
		},
		{
			name: "a reference tag whose image no owned tag carries is copied by digest",
			is:   stream([]imagev1.TagReference{from("DockerImage", repo+"@"+dC)}, history("alias", repo+"@"+dC)),
			want: []string{"target/app/web@" + dC + " : " + repo + "@" + dC},
		},
		{
			name: "a spec tag pinned to an image of a stream is owned: pushed as the tag",
			is:   stream([]imagev1.TagReference{from("ImageStreamImage", "web@"+dA)}, history("alias", repo+"@"+dA)),
			want: []string{"target/app/web:alias : " + repo + "@" + dA},
		},
		{
			name: "a spec tag without from is owned",
			is:   stream([]imagev1.TagReference{{Name: "v2"}}, history("v2", repo+"@"+dA)),
			want: []string{"target/app/web:v2 : " + repo + "@" + dA},
		},
		{
			name: "images pushed through the public route count as local and are pulled from there",
			is:   stream(nil, history("v1", public+"/app/web@"+dA)),
			want: []string{"target/app/web:v1 : " + public + "/app/web@" + dA},
		},
		{
			name: "an image of another stream is pulled from where it lives",
			is:   stream(nil, history("v1", internal+"/shared/base@"+dA)),
			want: []string{"target/app/web:v1 : " + internal + "/shared/base@" + dA},
		},
		{
			name: "a digest shared by two tags' histories is copied once",
			is:   stream(nil, history("v1", repo+"@"+dA, repo+"@"+dC), history("v2", repo+"@"+dB, repo+"@"+dC)),
			want: []string{
				"target/app/web@" + dC + " : " + repo + "@" + dC,
				"target/app/web:v1 : " + repo + "@" + dA, "target/app/web:v2 : " + repo + "@" + dB,
			},
		},
		{
			name:     "malformed items are problems; the rest is still planned",
			is:       stream(nil, history("v1", repo+"@"+dA, "not a reference"), history("v2", repo+":v2")),
			want:     []string{"target/app/web:v1 : " + repo + "@" + dA},
			problems: []string{`v1: history item 1: reference "not a reference" is not an image reference`, `v2: history item 0: reference "` + repo + `:v2" has no valid image digest`},
		},
		{
			name:     "a tag name a registry cannot hold is copied by digest, with a problem",
			is:       stream(nil, history("-odd", repo+"@"+dA)),
			want:     []string{"target/app/web@" + dA + " : " + repo + "@" + dA},
			problems: []string{"-odd: the tag name is not valid in a registry"},
		},
		{
			name: "a stream without status has nothing to copy",
			is:   stream(nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			images, problems := Plan(tt.is, internal, public)
			var got []string
			for _, im := range images {
				got = append(got, im.Destination("target/app/web")+" : "+im.Source)
			}
			assert.Equal(t, tt.want, got)
			var gotProblems []string
			for _, p := range problems {
				gotProblems = append(gotProblems, p.Tag+": "+p.Error)
			}
			assert.Len(t, gotProblems, len(tt.problems))
			for i := range tt.problems {
				if i < len(gotProblems) {
					assert.Contains(t, gotProblems[i], tt.problems[i])
				}
			}
		})
	}
}

func TestPlanWithoutKnownRegistryCopiesNothing(t *testing.T) {
	images, problems := Plan(stream(nil, history("v1", internal+"/app/web@"+dA)), "")
	assert.Empty(t, images)
	assert.Empty(t, problems)
}
