package registrytest

import (
	"fmt"
	"sort"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushImage pushes a random single-platform image (layers of size bytes each, plus its config)
// to ref ("namespace/name:tag" in this registry) and returns its manifest digest.
func (r *Registry) PushImage(ref string, layers int, size int64) (string, error) {
	img, err := random.Image(size, int64(layers))
	if err != nil {
		return "", err
	}
	tag, err := r.reference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, r.remoteOptions()...); err != nil {
		return "", fmt.Errorf("pushing a test image to %s: %w", tag, err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// PushIndex pushes a random manifest list of images (each with layers of size bytes) to ref and
// returns the list's digest.
func (r *Registry) PushIndex(ref string, images, layers int, size int64) (string, error) {
	idx, err := random.Index(size, int64(layers), int64(images))
	if err != nil {
		return "", err
	}
	tag, err := r.reference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(tag, idx, r.remoteOptions()...); err != nil {
		return "", fmt.Errorf("pushing a test index to %s: %w", tag, err)
	}
	d, err := idx.Digest()
	return d.String(), err
}

// Digest returns the manifest digest ref ("namespace/name:tag" or "namespace/name@digest")
// resolves to in this registry, asking the registry itself.
func (r *Registry) Digest(ref string) (string, error) {
	parsed, err := r.reference(ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(parsed, r.remoteOptions()...)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// Manifest returns the raw manifest (or list) ref resolves to.
func (r *Registry) Manifest(ref string) ([]byte, error) {
	parsed, err := r.reference(ref)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(parsed, r.remoteOptions()...)
	if err != nil {
		return nil, err
	}
	return desc.Manifest, nil
}

func (r *Registry) reference(ref string) (name.Reference, error) {
	var opts []name.Option
	if r.CAPEM == nil {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(r.Host+"/"+ref, opts...)
}

// remoteOptions authenticate as the registry's first user (by name) and trust its CA.
func (r *Registry) remoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(r.Transport())}
	if len(r.users) > 0 {
		users := make([]string, 0, len(r.users))
		for u := range r.users {
			users = append(users, u)
		}
		sort.Strings(users)
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: users[0], Password: r.users[users[0]]}))
	}
	return opts
}
