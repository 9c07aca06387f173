package images

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/sidecar"
)

// job is one stream's copy with everything resolved.
type job struct {
	images   []imagecopy.Image
	problems []operation.ImageError
	// repo is the target repository: registry/namespace/name.
	repo string
	// sources is how to reach each source registry host; target how to reach the target one.
	sources map[string]imagecopy.Access
	target  imagecopy.Access
}

// prepare resolves what to copy, from where, to where and how to authenticate, and makes sure
// the target namespace (and, on OpenShift, the target image stream) exists. Problems a retry
// cannot fix (bad configuration, a missing Secret, no registry to push to) are permanent.
func (r *Reconciler) prepare(ctx context.Context, cfg *config.Config, u *unstructured.Unstructured, req *operation.ImageCopyRequest) (*job, error) {
	if !cfg.ImageCopy {
		return nil, sidecar.Permanent(fmt.Errorf("image copies are turned off in ferry-config (imageCopy=false)"))
	}
	is, err := decodeStream(u)
	if err != nil {
		return nil, err
	}
	internal, err := imagecopy.InternalRegistry(ctx, r.Source, cfg.InternalRegistry)
	if err != nil {
		return nil, err
	}
	if internal == "" {
		return nil, sidecar.Permanent(fmt.Errorf("the source cluster's internal registry is unknown (no OpenShift registry found): set internalRegistry in ferry-config"))
	}
	hosts := []string{internal}
	if public, _, ok := strings.Cut(is.Status.PublicDockerImageRepository, "/"); ok && public != "" {
		hosts = append(hosts, public)
	}
	j := &job{sources: map[string]imagecopy.Access{}}
	j.images, j.problems = imagecopy.Plan(is, hosts...)

	target, err := r.Target(ctx, cfg)
	if err != nil {
		return nil, err
	}
	endpoint, err := imagecopy.TargetRegistryEndpoint(ctx, target, cfg.TargetRegistryEndpoint)
	if err != nil {
		return nil, err
	}
	j.repo = endpoint + "/" + req.TargetNamespace + "/" + req.TargetName
	if len(j.images) == 0 {
		return j, nil
	}
	for _, im := range j.images {
		host := registryOf(im.Source)
		if _, ok := j.sources[host]; ok {
			continue
		}
		if j.sources[host], err = imagecopy.SourceAccess(ctx, r.Source, cfg, host); err != nil {
			return nil, err
		}
	}
	if j.target, err = imagecopy.TargetAccess(ctx, r.Source, target.Config, cfg, endpoint); err != nil {
		return nil, err
	}
	if _, err := sidecar.EnsureTargetNamespace(ctx, r.Source, target, u.GetNamespace(), req.TargetNamespace); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, target, req); err != nil {
		return nil, err
	}
	return j, nil
}

// registryOf is the host of an image reference.
func registryOf(ref string) string {
	host, _, _ := strings.Cut(ref, "/")
	return host
}

// ensureStream creates the target image stream, marked as ferry's, before images are pushed into
// it. OpenShift's registry would otherwise create a bare one on the first push; the marked one
// tells the restore it may replace the stream's metadata and spec with the backed-up ones
// (a stream someone else made is left to Velero's usual rules).
func ensureStream(ctx context.Context, target *kube.Clients, req *operation.ImageCopyRequest) error {
	served, err := target.APIs.Has(kube.ImageGV, "imagestreams")
	if err != nil || !served {
		return err
	}
	streams := target.Dynamic.Resource(imageStreams).Namespace(req.TargetNamespace)
	_, err = streams.Get(ctx, req.TargetName, metav1.GetOptions{})
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kube.ImageGV.WithKind("ImageStream"))
	u.SetNamespace(req.TargetNamespace)
	u.SetName(req.TargetName)
	u.SetAnnotations(map[string]string{keys.ImageCopyCreated: req.ID})
	_, err = streams.Create(ctx, u, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the target image stream %s/%s: %w", req.TargetNamespace, req.TargetName, err)
	}
	return nil
}
