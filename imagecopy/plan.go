package imagecopy

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	imagev1 "github.com/openshift/api/image/v1"
	"go.podman.io/image/v5/docker/reference"

	"github.com/ferry-dev/ferry/internal/operation"
)

// Image is one image of a stream to copy.
type Image struct {
	// Tag is the stream tag the image belongs to: its current image or an older history item.
	Tag string
	// Digest is the image's manifest digest; it is the same in the target.
	Digest string
	// Source is where the image is pulled from, always by digest: repository@digest.
	Source string
	// Tagged images are pushed as Tag (the tag's current image); the others by digest only.
	Tagged bool

	named reference.Named
}

// Destination is where the image goes in repo (registry/namespace/name): repo:tag for the current
// image of a tag the stream owns, repo@digest otherwise. Never an implied :latest.
func (im Image) Destination(repo string) string {
	if im.Tagged {
		return repo + ":" + im.Tag
	}
	return repo + "@" + im.Digest
}

// Plan lists the images of a stream that live in the source cluster's registry (registries are
// the hosts it is known by: the internal host, and the public route host if any) and so must be
// copied. For each tag: every history item by digest, and the current image as the tag itself
// when the stream owns the tag (pushed, or a spec tag pinned to an image of a stream). Tags that
// follow another tag or an external image (spec tag from ImageStreamTag or DockerImage) are
// pushed by digest only: the restored spec recreates the reference. Images elsewhere (external
// registries) are left where they are. A digest is copied once. Digest-only images come first,
// tags last, so a tag never points at an image whose history is still on its way.
//
// Items that cannot be copied (no digest, a malformed reference) are returned as problems, one per
// item, so the rest of the stream is still copied.
func Plan(is *imagev1.ImageStream, registries ...string) (images []Image, problems []operation.ImageError) {
	local := map[string]bool{}
	for _, r := range registries {
		if r != "" {
			local[strings.ToLower(r)] = true
		}
	}
	owned := map[string]bool{}
	for _, t := range is.Spec.Tags {
		owned[t.Name] = t.From == nil || t.From.Kind == "ImageStreamImage"
	}
	var tagged, byDigest []Image
	taggedDigests := map[string]bool{}
	for _, tag := range is.Status.Tags {
		own, inSpec := owned[tag.Tag]
		own = own || !inSpec
		for i, item := range tag.Items {
			im, isLocal, err := planItem(tag.Tag, item, local)
			if err != nil {
				problems = append(problems, operation.ImageError{Tag: tag.Tag, Image: item.Image, Error: fmt.Sprintf("history item %d: %v", i, err)})
				continue
			}
			if !isLocal {
				continue
			}
			if i == 0 && own {
				if _, err := reference.WithTag(reference.TrimNamed(im.named), tag.Tag); err != nil {
					problems = append(problems, operation.ImageError{Tag: tag.Tag, Image: im.Digest, Error: "the tag name is not valid in a registry; its current image is copied by digest only"})
				} else {
					im.Tagged = true
					taggedDigests[im.Digest] = true
					tagged = append(tagged, im)
					continue
				}
			}
			byDigest = append(byDigest, im)
		}
	}
	seen := map[string]bool{}
	for _, im := range byDigest {
		if taggedDigests[im.Digest] || seen[im.Digest] {
			continue
		}
		seen[im.Digest] = true
		images = append(images, im)
	}
	return append(images, tagged...), problems
}

// planItem turns one history item into an Image pulled by digest, reporting whether it lives in
// one of the local registries.
func planItem(tag string, item imagev1.TagEvent, local map[string]bool) (Image, bool, error) {
	named, err := reference.ParseNormalizedNamed(item.DockerImageReference)
	if err != nil {
		return Image{}, false, fmt.Errorf("reference %q is not an image reference: %v", item.DockerImageReference, err)
	}
	if !local[strings.ToLower(reference.Domain(named))] {
		return Image{}, false, nil
	}
	d := item.Image
	if d == "" {
		if c, ok := named.(reference.Canonical); ok {
			d = c.Digest().String()
		}
	}
	if _, err := digest.Parse(d); err != nil {
		return Image{}, true, fmt.Errorf("reference %q has no valid image digest (%q)", item.DockerImageReference, item.Image)
	}
	return Image{Tag: tag, Digest: d, Source: reference.TrimNamed(named).String() + "@" + d, named: named}, true, nil
}
