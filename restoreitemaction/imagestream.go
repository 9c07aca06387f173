package restoreitemaction

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/label"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

var (
	imageStreamsGR    = schema.GroupResource{Group: kube.ImageGV.Group, Resource: "imagestreams"}
	imageStreamTagsGR = schema.GroupResource{Group: kube.ImageGV.Group, Resource: "imagestreamtags"}
)

// referentWait bounds how long a restore waits for the streams or tags an item refers to.
const referentWait = 2 * time.Minute

// ImageStreamAction restores an image stream whole, metadata and spec included (the images
// themselves were copied to the target registry by the backup, by digest):
//   - ferry's copy annotations and source stamps are dropped;
//   - spec tags that follow a tag or image of another stream follow the restore's namespace
//     mapping, and spec tags naming an image in the source's internal registry name the same
//     digest in the target's;
//   - a spec tag that follows another stream of the same namespace waits until that stream is
//     restored (Velero restores it first as an additional item), so the target's API server can
//     resolve the reference when this stream is created;
//   - a stream the image copy created in the target before the restore (it pushes into it; it
//     carries ferry.dev/created-by-image-copy) is given the backed-up labels, annotations and spec
//     instead of Velero's "already exists" warning. A stream made by someone else is left to
//     Velero's existing-resource policy.
//
// Status is not rewritten: OpenShift's API server computes it from the spec and the pushed images.
type ImageStreamAction struct {
	log      logrus.FieldLogger
	clients  *kube.Clients
	registry func() string
}

var _ riav2.RestoreItemAction = (*ImageStreamAction)(nil)

func NewImageStreamAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *ImageStreamAction {
	return &ImageStreamAction{log: log, clients: clients, registry: targetRegistry(log, clients, cfg)}
}

// Name is required by the v2 interface; Velero uses the registered name instead.
func (a *ImageStreamAction) Name() string { return "ImageStreamAction" }

func (a *ImageStreamAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"imagestreams.image.openshift.io"}}, nil
}

func (a *ImageStreamAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	nsMap := namespaceMapping(input)
	sourceNS, name := u.GetNamespace(), u.GetName()
	targetNS := mapNamespace(nsMap, sourceNS)
	log := a.log.WithFields(logrus.Fields{"namespace": sourceNS, "name": name})
	rw := imageRewrite{from: from.GetAnnotations()[keys.SourceRegistry], nsMap: nsMap}
	if rw.from != "" {
		rw.to = a.registry()
	}
	if reg := from.GetAnnotations()[keys.OVPMigrationRegistry]; reg != "" {
		log.Warnf("openshift-velero-plugin copied this stream's images at backup too (%s: %s): if OADP's image backup is on for this restore, its restore action copies them again and leaves the stream object out. Next to ferry turn it off (DataProtectionApplication spec.backupImages: false)", keys.OVPMigrationRegistry, reg)
	}
	dropSourceStamps(u)
	dropImageCopyKeys(u)
	if dockerRepo, _, _ := unstructured.NestedString(u.Object, "spec", "dockerImageRepository"); dockerRepo != "" {
		if out, changed := rw.image(dockerRepo); changed {
			_ = unstructured.SetNestedField(u.Object, out, "spec", "dockerImageRepository")
		}
	}
	tags, _, err := unstructured.NestedSlice(u.Object, "spec", "tags")
	if err != nil {
		return nil, fmt.Errorf("ImageStream %s/%s: spec.tags: %w", sourceNS, name, err)
	}
	backedUpTags, _, _ := unstructured.NestedSlice(from.Object, "spec", "tags")
	was := map[string]map[string]any{}
	for _, t := range backedUpTags {
		tag, _ := t.(map[string]any)
		tagName, _ := tag["name"].(string)
		was[tagName], _ = tag["from"].(map[string]any)
	}
	var referents []velero.ResourceIdentifier
	seen := map[string]bool{}
	for _, t := range tags {
		tag, _ := t.(map[string]any)
		ref, _ := tag["from"].(map[string]any)
		if ref == nil {
			continue
		}
		tagName, _ := tag["name"].(string)
		if stream := mapTagReference(ref, was[tagName], sourceNS, rw, log); stream != "" && stream != name && !seen[stream] {
			seen[stream] = true
			referents = append(referents, velero.ResourceIdentifier{GroupResource: imageStreamsGR, Namespace: sourceNS, Name: stream})
		}
	}
	if len(tags) > 0 {
		if err := unstructured.SetNestedSlice(u.Object, tags, "spec", "tags"); err != nil {
			return nil, err
		}
	}

	out := velero.NewRestoreItemActionExecuteOutput(u)
	if len(referents) > 0 {
		out.AdditionalItems, out.WaitForAdditionalItems, out.AdditionalItemsReadyTimeout = referents, true, referentWait
	}
	adopted, err := a.adopt(context.Background(), u, targetNS, input.Restore, len(referents) > 0, log)
	if err != nil {
		return nil, fmt.Errorf("ImageStream %s/%s: %w", sourceNS, name, err)
	}
	if adopted {
		return out.WithoutRestore(), nil
	}
	return out, nil
}

// mapTagReference maps a tag's from in place and returns the name of the stream of the same
// namespace it follows ("" for none). was is the same from in the backup: what an action before
// ferry's changed (openshift-velero-plugin maps image stream tags' namespaces) is left as it is.
func mapTagReference(ref, was map[string]any, sourceNS string, rw imageRewrite, log logrus.FieldLogger) string {
	kind, _ := ref["kind"].(string)
	refName, _ := ref["name"].(string)
	refNS, _ := ref["namespace"].(string)
	wasName, _ := was["name"].(string)
	wasNS, _ := was["namespace"].(string)
	switch kind {
	case "ImageStreamTag", "ImageStreamImage":
		if refNS != "" {
			ref["namespace"] = once(refNS, wasNS, func(ns string) string { return mapNamespace(rw.nsMap, ns) })
		}
		followedNS := refNS // as backed up: the current one may be mapped already
		if was != nil {
			followedNS = wasNS
		}
		if followedNS != "" && followedNS != sourceNS {
			return ""
		}
		stream, _, _ := strings.Cut(refName, ":")
		stream, _, _ = strings.Cut(stream, "@")
		return stream
	case "DockerImage":
		if out, changed := rw.once(log, refName, wasName); changed {
			ref["name"] = out
			log.Infof("spec tag image %s rewritten to %s", refName, out)
		}
	}
	return ""
}

// adopt gives a stream the image copy created in the target the backed-up labels, annotations
// and spec (plus Velero's restore labels), and reports whether it did. It does not when the stream
// is not ferry's, or when it follows streams not yet in the target: then Velero restores those
// first and applies its existing-resource policy to this one.
func (a *ImageStreamAction) adopt(ctx context.Context, desired *unstructured.Unstructured, targetNS string, restore *velerov1.Restore, hasReferents bool, log logrus.FieldLogger) (bool, error) {
	if served, err := a.clients.APIs.Has(kube.ImageGV, "imagestreams"); err != nil || !served {
		return false, err
	}
	streams := a.clients.Dynamic.Resource(kube.ImageGV.WithResource("imagestreams")).Namespace(targetNS)
	name := desired.GetName()
	adopted := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := streams.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the target stream %s/%s: %w", targetNS, name, err)
		}
		if _, ours := live.GetAnnotations()[keys.ImageCopyCreated]; !ours {
			return nil
		}
		if hasReferents {
			log.Warnf("the image copy created %s/%s in the target and the stream follows other streams: Velero restores those first and reports this one as existing (use --existing-resource-policy=update to apply the backed-up spec)", targetNS, name)
			return nil
		}
		labels := desired.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		if restore != nil {
			labels[velerov1.BackupNameLabel] = label.GetValidName(restore.Spec.BackupName)
			labels[velerov1.RestoreNameLabel] = label.GetValidName(restore.Name)
		}
		live.SetLabels(labels)
		ann := desired.GetAnnotations()
		if paired, ok := live.GetAnnotations()[keys.PairedWith]; ok {
			// Later stage copies from the same source stream may still push into it.
			if ann == nil {
				ann = map[string]string{}
			}
			ann[keys.PairedWith] = paired
		}
		live.SetAnnotations(ann)
		if spec, ok := desired.Object["spec"]; ok {
			live.Object["spec"] = spec
		} else {
			delete(live.Object, "spec")
		}
		if _, err := streams.Update(ctx, live, metav1.UpdateOptions{}); err != nil {
			return err
		}
		adopted = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("applying the backed-up stream to the one the image copy created: %w", err)
	}
	if adopted {
		log.Infof("the image copy had created %s/%s in the target; it now has the backed-up labels, annotations and spec", targetNS, name)
	}
	return adopted, nil
}

// dropImageCopyKeys removes the image copy request, status and created-by marker.
func dropImageCopyKeys(u *unstructured.Unstructured) {
	ann := u.GetAnnotations()
	for k := range ann {
		if keys.IsImageCopyKey(k) {
			delete(ann, k)
		}
	}
	if len(ann) == 0 {
		ann = nil
	}
	u.SetAnnotations(ann)
}

// AreAdditionalItemsReady reports whether the streams this one follows exist in the target.
func (a *ImageStreamAction) AreAdditionalItemsReady(items []velero.ResourceIdentifier, restore *velerov1.Restore) (bool, error) {
	return referentsExist(context.Background(), a.clients, items, restore)
}

func (a *ImageStreamAction) Progress(string, *velerov1.Restore) (velero.OperationProgress, error) {
	return velero.OperationProgress{}, riav2.AsyncOperationsNotSupportedError()
}

func (a *ImageStreamAction) Cancel(string, *velerov1.Restore) error { return nil }

// referentsExist reports whether every item (image streams or image stream tags, identified by
// their backup namespace) exists in the target, in its mapped namespace.
func referentsExist(ctx context.Context, c *kube.Clients, items []velero.ResourceIdentifier, restore *velerov1.Restore) (bool, error) {
	var nsMap map[string]string
	if restore != nil {
		nsMap = restore.Spec.NamespaceMapping
	}
	for _, it := range items {
		gvr := kube.ImageGV.WithResource(it.Resource)
		_, err := c.Dynamic.Resource(gvr).Namespace(mapNamespace(nsMap, it.Namespace)).Get(ctx, it.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("checking %s %s/%s in the target: %w", it.Resource, mapNamespace(nsMap, it.Namespace), it.Name, err)
		}
	}
	return true, nil
}
