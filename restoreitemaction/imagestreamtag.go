package restoreitemaction

import (
	"context"
	"strings"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// ImageStreamTagAction decides what happens to image stream tags, which OpenShift serves as a
// view of their image stream:
//   - when the restore also restores image streams, tags are left out: the stream's spec carries
//     every tag that follows something, and the image copy put every pushed tag's image in the
//     target registry (the target's registry records it in the stream);
//   - in a restore of tags only, a pushed tag is left out too (it cannot be created as an object;
//     its image is already in the target), and a tag that follows another tag is restored with
//     the namespace mapping and registry rewrite applied, after the tag it follows when that tag
//     is in the same namespace (Velero restores it first and waits for it).
type ImageStreamTagAction struct {
	log      logrus.FieldLogger
	clients  *kube.Clients
	registry func() string
}

var _ riav2.RestoreItemAction = (*ImageStreamTagAction)(nil)

func NewImageStreamTagAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *ImageStreamTagAction {
	return &ImageStreamTagAction{log: log, clients: clients, registry: targetRegistry(log, clients, cfg)}
}

// Name is required by the v2 interface; Velero uses the registered name instead.
func (a *ImageStreamTagAction) Name() string { return "ImageStreamTagAction" }

func (a *ImageStreamTagAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"imagestreamtags.image.openshift.io"}}, nil
}

func (a *ImageStreamTagAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	log := a.log.WithFields(logrus.Fields{"namespace": u.GetNamespace(), "name": u.GetName()})
	if restoresImageStreams(input.Restore) {
		log.Info("not restored: its image stream carries the tag, and the image copy its image")
		return velero.NewRestoreItemActionExecuteOutput(u).WithoutRestore(), nil
	}
	ref, _, _ := unstructured.NestedMap(u.Object, "tag", "from")
	if ref == nil {
		log.Info("not restored: a pushed tag is recreated by the image copy, not as an object")
		return velero.NewRestoreItemActionExecuteOutput(u).WithoutRestore(), nil
	}
	nsMap := namespaceMapping(input)
	rw := imageRewrite{from: from.GetAnnotations()[keys.SourceRegistry], nsMap: nsMap}
	if rw.from != "" {
		rw.to = a.registry()
	}
	dropSourceStamps(u)
	kind, _ := ref["kind"].(string)
	refName, _ := ref["name"].(string)
	was, _, _ := unstructured.NestedMap(from.Object, "tag", "from")
	followed := mapTagReference(ref, was, u.GetNamespace(), rw, log)
	if err := unstructured.SetNestedMap(u.Object, ref, "tag", "from"); err != nil {
		return nil, err
	}
	out := velero.NewRestoreItemActionExecuteOutput(u)
	// The tag followed, when it is in this namespace, is restored first.
	if kind == "ImageStreamTag" && followed != "" && refName != u.GetName() && strings.Contains(refName, ":") {
		out.AdditionalItems = []velero.ResourceIdentifier{{GroupResource: imageStreamTagsGR, Namespace: u.GetNamespace(), Name: refName}}
		out.WaitForAdditionalItems, out.AdditionalItemsReadyTimeout = true, referentWait
	}
	return out, nil
}

// restoresImageStreams reports whether a restore includes image streams (Velero's default is
// every resource).
func restoresImageStreams(restore *velerov1.Restore) bool {
	if restore == nil {
		return true
	}
	names := map[string]bool{"imagestreams": true, "imagestreams.image.openshift.io": true, "imagestream": true, "is": true}
	for _, r := range restore.Spec.ExcludedResources {
		if names[strings.ToLower(r)] || r == "*" {
			return false
		}
	}
	if len(restore.Spec.IncludedResources) == 0 {
		return true
	}
	for _, r := range restore.Spec.IncludedResources {
		if r == "*" || names[strings.ToLower(r)] {
			return true
		}
	}
	return false
}

// AreAdditionalItemsReady reports whether the tag this one follows exists in the target.
func (a *ImageStreamTagAction) AreAdditionalItemsReady(items []velero.ResourceIdentifier, restore *velerov1.Restore) (bool, error) {
	return referentsExist(context.Background(), a.clients, items, restore)
}

func (a *ImageStreamTagAction) Progress(string, *velerov1.Restore) (velero.OperationProgress, error) {
	return velero.OperationProgress{}, riav2.AsyncOperationsNotSupportedError()
}

func (a *ImageStreamTagAction) Cancel(string, *velerov1.Restore) error { return nil }
