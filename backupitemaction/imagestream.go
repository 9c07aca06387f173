package backupitemaction

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/transfer"
	"github.com/ferry-dev/ferry/internal/units"
)

var imageStreams = kube.ImageGV.WithResource("imagestreams")

// ImageStreamAction has a migration backup copy an image stream's locally pushed images straight
// from this cluster's registry to the target's (no object-store hop). It writes a copy request on
// the live stream and returns an operation ID; the ferry-datamover sidecar copies and writes its
// status back on the stream, which Progress() reads. Nothing is copied for ordinary backups, with
// imageCopy=false in ferry-config, for streams annotated ferry.dev/skip-image-copy=true, or when
// a stream has no image in this cluster's registry. The backed-up stream itself is unchanged
// (only stale copy annotations are dropped): the restore needs its spec and metadata as they are.
type ImageStreamAction struct {
	log      logrus.FieldLogger
	clients  *kube.Clients
	config   func() (*config.Config, error)
	registry func(cfg *config.Config) (string, error)
}

var _ biav2.BackupItemAction = (*ImageStreamAction)(nil)

// NewImageStreamAction returns the action. The internal registry is discovered once per plugin
// process (one backup).
func NewImageStreamAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *ImageStreamAction {
	var once sync.Once
	var host string
	var err error
	return &ImageStreamAction{log: log, clients: clients, config: cfg, registry: func(c *config.Config) (string, error) {
		once.Do(func() { host, err = imagecopy.InternalRegistry(context.Background(), clients, c.InternalRegistry) })
		return host, err
	}}
}

// Name is required by the v2 interface; Velero uses the registered name instead.
func (a *ImageStreamAction) Name() string { return "ImageStreamAction" }

func (a *ImageStreamAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"imagestreams.image.openshift.io"}}, nil
}

func (a *ImageStreamAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, string, []velero.ResourceIdentifier, error) {
	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	dropCopyAnnotations(u)
	_, migrating, err := migrationType(backup)
	if err != nil || !migrating || finalizing(backup) {
		return u, nil, "", nil, err
	}
	ns, name := u.GetNamespace(), u.GetName()
	id := fmt.Sprintf("ImageStream %s/%s", ns, name)
	log := a.log.WithFields(logrus.Fields{"namespace": ns, "name": name, "backup": backup.Name})
	ctx := context.Background()

	cfg, err := a.config()
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("%s: %w", id, err)
	}
	if !cfg.ImageCopy {
		log.Info("images not copied: imageCopy=false in ferry-config")
		return u, nil, "", nil, nil
	}
	if v, ok := u.GetAnnotations()[keys.SkipImageCopy]; ok {
		skip, err := strconv.ParseBool(v)
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("%s: annotation %s=%q: want true or false", id, keys.SkipImageCopy, v)
		}
		if skip {
			log.Infof("images not copied: the stream is annotated %s=true", keys.SkipImageCopy)
			return u, nil, "", nil, nil
		}
	}
	registry, err := a.registry(cfg)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("%s: finding this cluster's internal registry: %w", id, err)
	}
	if registry == "" {
		log.Info("images not copied: this cluster has no internal registry (set internalRegistry in ferry-config if it has one)")
		return u, nil, "", nil, nil
	}
	var is imagev1.ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return nil, nil, "", nil, fmt.Errorf("decoding %s: %w", id, err)
	}
	public, _, _ := strings.Cut(is.Status.PublicDockerImageRepository, "/")
	if images, problems := imagecopy.Plan(&is, registry, public); len(images)+len(problems) == 0 {
		log.Debug("no image of this stream is in the internal registry; nothing to copy")
		return u, nil, "", nil, nil
	}

	targetNS, err := targetNamespace(backup, cfg, ns)
	if err != nil {
		return nil, nil, "", nil, err
	}
	if backup.UID == "" {
		return nil, nil, "", nil, fmt.Errorf("backup %s has no UID; cannot name an image copy for %s", backup.Name, id)
	}
	if err := sidecarRunning(ctx, a.clients); err != nil {
		return nil, nil, "", nil, fmt.Errorf("%s: %w", id, err)
	}
	req := &imagecopy.Request{ID: string(backup.UID), TargetNamespace: targetNS, TargetName: name, Backup: backup.Name}
	patch := map[string]any{keys.ImageCopyCancel: nil} // a stale cancel of an older ID must not linger
	for k, v := range req.Annotations() {
		patch[k] = v
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return nil, nil, "", nil, err
	}
	if _, err := a.clients.Dynamic.Resource(imageStreams).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return nil, nil, "", nil, fmt.Errorf("%s: writing the image copy request: %w", id, err)
	}
	op := transfer.OperationID(ns, name, req.ID)
	log.WithField("operationID", op).Infof("requested a copy of the stream's images to %s/%s in the target registry", targetNS, name)
	return u, nil, op, nil, nil
}

// dropCopyAnnotations keeps this cluster's copy request and status out of the backup: they
// describe a copy, not the stream.
func dropCopyAnnotations(u *unstructured.Unstructured) {
	ann := u.GetAnnotations()
	for k := range ann {
		if keys.IsImageCopyKey(k) {
			delete(ann, k)
		}
	}
	if ann != nil {
		u.SetAnnotations(ann)
	}
}

// Progress reports the sidecar's status for the operation. "Not done yet" is never an error:
// Velero fails an operation for good on the first error Progress returns.
func (a *ImageStreamAction) Progress(operationID string, backup *velerov1.Backup) (velero.OperationProgress, error) {
	ns, name, id, err := transfer.ParseOperationID(operationID)
	if err != nil {
		return velero.OperationProgress{}, biav2.InvalidOperationIDError(operationID)
	}
	ctx := context.Background()
	p := velero.OperationProgress{OperationUnits: "Images"}
	u, err := a.clients.Dynamic.Resource(imageStreams).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		p.Completed, p.Err = true, fmt.Sprintf("ImageStream %s/%s was deleted before its images were copied", ns, name)
		return p, nil
	}
	if err != nil {
		p.Description = fmt.Sprintf("cannot read ImageStream %s/%s yet: %v", ns, name, err)
		return p, nil
	}
	ann := u.GetAnnotations()
	if cur := ann[keys.ImageCopyID]; cur != id {
		p.Completed, p.Err = true, fmt.Sprintf("ImageStream %s/%s: image copy %s was replaced by copy %q (another backup or a hand-written request)", ns, name, id, cur)
		return p, nil
	}
	st, err := imagecopy.ParseStatus(ann)
	if err != nil {
		p.Completed, p.Err = true, fmt.Sprintf("ImageStream %s/%s: %v", ns, name, err)
		return p, nil
	}
	if st == nil || st.ID != id {
		p.Description = "Waiting for ferry-datamover to pick up the image copy"
		if err := sidecarRunning(ctx, a.clients); err != nil {
			p.Completed, p.Err = true, err.Error()
		}
		return p, nil
	}
	return imageCopyProgress(st, ns, name), nil
}

// imageCopyProgress maps the sidecar's status onto Velero's operation progress.
func imageCopyProgress(st *imagecopy.Status, ns, name string) velero.OperationProgress {
	p := velero.OperationProgress{OperationUnits: "Images", NCompleted: int64(st.ImagesDone), NTotal: int64(st.Images)}
	p.Description = fmt.Sprintf("%s %d/%d images: %d blobs sent (%s), %d already in the target", st.Phase, st.ImagesDone, st.Images,
		st.BlobsSent, units.Bytes(st.BytesSent), st.BlobsSkipped)
	if st.Target != "" {
		p.Description += ", to " + st.Target
	}
	if st.Message != "" && !st.Phase.Terminal() {
		p.Description += ": " + st.Message
	}
	if st.Started != nil {
		p.Started = st.Started.Time
	}
	if st.Updated != nil {
		p.Updated = st.Updated.Time
	}
	switch st.Phase {
	case imagecopy.PhaseCompleted:
		p.Completed = true
	case imagecopy.PhaseFailed:
		p.Completed, p.Err = true, fmt.Sprintf("images of ImageStream %s/%s not copied: %s", ns, name, st.Message)
	case imagecopy.PhaseCancelled:
		p.Completed, p.Err = true, fmt.Sprintf("the image copy of ImageStream %s/%s was cancelled", ns, name)
	}
	return p
}

// Cancel asks the sidecar to stop the copy; it reports Cancelled.
func (a *ImageStreamAction) Cancel(operationID string, backup *velerov1.Backup) error {
	ns, name, id, err := transfer.ParseOperationID(operationID)
	if err != nil {
		return biav2.InvalidOperationIDError(operationID)
	}
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.ImageCopyCancel: id}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.clients.Dynamic.Resource(imageStreams).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ImageStream %s/%s: asking ferry-datamover to cancel image copy %s: %w", ns, name, id, err)
	}
	a.log.WithFields(logrus.Fields{"namespace": ns, "name": name, "operationID": operationID}).Info("asked ferry-datamover to cancel the image copy")
	return nil
}

// targetNamespace maps a source namespace the way every ferry transfer does: the Backup's
// ferry.dev/namespace-mapping annotation, else ferry-config's namespaceMapping.
func targetNamespace(backup *velerov1.Backup, cfg *config.Config, namespace string) (string, error) {
	mapping := cfg.NamespaceMapping
	if v, ok := backup.Annotations[keys.NamespaceMapping]; ok {
		var err error
		if mapping, err = config.ParseNamespaceMapping(v); err != nil {
			return "", fmt.Errorf("backup %s: annotation %s: %w", backup.Name, keys.NamespaceMapping, err)
		}
	}
	if m, ok := mapping[namespace]; ok {
		return m, nil
	}
	return namespace, nil
}

// sidecarRunning fails fast, with the fix in the message, when no ferry-datamover has ever run
// next to this Velero: without it the operation would wait for the whole item-operation timeout.
func sidecarRunning(ctx context.Context, clients *kube.Clients) error {
	_, err := clients.Kube.CoordinationV1().Leases(clients.Namespace).Get(ctx, transfer.SidecarLease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the ferry-datamover sidecar is not running next to Velero (no Lease %s/%s); add it to the Velero deployment (see deploy/ in the ferry repository)", clients.Namespace, transfer.SidecarLease)
	}
	if err != nil {
		return fmt.Errorf("checking for the ferry-datamover sidecar: %w", err)
	}
	return nil
}
