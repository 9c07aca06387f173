package images

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

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
	if j.target, err = imagecopy.TargetAccess(ctx, r.Source, target, cfg, endpoint); err != nil {
		return nil, err
	}
	exists, err := checkStream(ctx, cfg, target, u, req)
	if err != nil {
		return nil, err
	}
	if _, err := sidecar.EnsureTargetNamespace(ctx, r.Source, target, u.GetNamespace(), req.TargetNamespace); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, target, u, req, exists); err != nil {
		return nil, err
	}
	return j, nil
}

// registryOf is the host of an image reference.
func registryOf(ref string) string {
	host, _, _ := strings.Cut(ref, "/")
	return host
}

// checkStream decides whether the copy may push into the target stream before anything is
// made on the target: ferry pushes into a stream it created for this source stream, or one
// without images; anything else only when an admin allowed overwriting. It reports whether the
// stream exists. In one cluster, a stream is never its own target.
func checkStream(ctx context.Context, cfg *config.Config, target *kube.Clients, source *unstructured.Unstructured, req *operation.ImageCopyRequest) (bool, error) {
	if cfg.TargetKubeconfigSecret == "" && req.TargetNamespace == source.GetNamespace() && req.TargetName == source.GetName() {
		return false, sidecar.Refusal(fmt.Errorf("the target is the source stream itself (targetKubeconfigSecret is empty: the target is this cluster); map the namespace with namespaceMapping"))
	}
	served, err := target.APIs.Has(kube.ImageGV, "imagestreams")
	if err != nil || !served {
		return false, err
	}
	cur, err := target.Dynamic.Resource(imageStreams).Namespace(req.TargetNamespace).Get(ctx, req.TargetName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the target image stream %s: %w", req.Target(), err)
	}
	tags, _, _ := unstructured.NestedSlice(cur.Object, "status", "tags")
	switch paired := cur.GetAnnotations()[keys.PairedWith]; {
	case paired == string(source.GetUID()), req.Overwrite:
	case paired != "":
		return true, sidecar.Refusal(fmt.Errorf("target image stream %s holds images ferry copied from another stream (UID %s); ferry does not push into it (an admin may allow it: annotation %s=true on the Backup, or allowOverwrite in ferry-config)", req.Target(), paired, keys.AllowOverwrite))
	case len(tags) > 0:
		return true, sidecar.Refusal(fmt.Errorf("target image stream %s has images ferry did not push; ferry does not push into it (an admin may allow it: annotation %s=true on the Backup, or allowOverwrite in ferry-config)", req.Target(), keys.AllowOverwrite))
	}
	return true, nil
}

// ensureStream creates the target image stream, marked as ferry's and paired with the source
// stream, before images are pushed into it; an existing one checkStream let through is paired.
// OpenShift's registry would otherwise create a bare one on the first push; the marked one
// tells the restore it may replace the stream's metadata and spec with the backed-up ones (a
// stream someone else made is left to Velero's usual rules).
func ensureStream(ctx context.Context, target *kube.Clients, source *unstructured.Unstructured, req *operation.ImageCopyRequest, exists bool) error {
	served, err := target.APIs.Has(kube.ImageGV, "imagestreams")
	if err != nil || !served {
		return err
	}
	streams := target.Dynamic.Resource(imageStreams).Namespace(req.TargetNamespace)
	uid := string(source.GetUID())
	if exists {
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.PairedWith: uid}}})
		if _, err := streams.Patch(ctx, req.TargetName, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("pairing the target image stream %s with the source: %w", req.Target(), err)
		}
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kube.ImageGV.WithKind("ImageStream"))
	u.SetNamespace(req.TargetNamespace)
	u.SetName(req.TargetName)
	u.SetAnnotations(map[string]string{keys.ImageCopyCreated: req.ID, keys.PairedWith: uid})
	_, err = streams.Create(ctx, u, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the target image stream %s/%s: %w", req.TargetNamespace, req.TargetName, err)
	}
	return nil
}
