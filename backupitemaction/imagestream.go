package backupitemaction

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	imagev1 "github.com/openshift/api/image/v1"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav2 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
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
	overwrite, err := allowOverwrite(backup, cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	req := &operation.ImageCopyRequest{Request: operation.Request{ID: string(backup.UID), TargetNamespace: targetNS, TargetName: name, Backup: backup.Name, Overwrite: overwrite}}
	if err := a.operations().request(ctx, ns, name, u.GetUID(), req.Annotations()); err != nil {
		return nil, nil, "", nil, err
	}
	op := operation.ID(ns, name, req.ID)
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

// operations follows the image copies this action requested.
func (a *ImageStreamAction) operations() *operations {
	return &operations{
		log: a.log, clients: a.clients, keys: operation.ImageCopyKeys, units: "Images",
		annotations: func(ctx context.Context, ns, name string) (map[string]string, error) {
			u, err := a.clients.Dynamic.Resource(imageStreams).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return u.GetAnnotations(), nil
		},
		patch: func(ctx context.Context, ns, name string, body []byte) error {
			_, err := a.clients.Dynamic.Resource(imageStreams).Namespace(ns).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
			return err
		},
		fromStatus: func(ann map[string]string, ns, name string) (*velero.OperationProgress, operation.Status, error) {
			st, err := operation.ParseImageCopyStatus(ann)
			if st == nil || err != nil {
				return nil, nil, err
			}
			p := imageCopyProgress(st, ns, name)
			return &p, st, nil
		},
	}
}

// Progress reports the sidecar's status for the image copy.
func (a *ImageStreamAction) Progress(operationID string, _ *velerov1.Backup) (velero.OperationProgress, error) {
	return a.operations().Progress(operationID)
}

// Cancel asks the sidecar to stop the copy; it reports Cancelled.
func (a *ImageStreamAction) Cancel(operationID string, _ *velerov1.Backup) error {
	return a.operations().Cancel(operationID)
}

// imageCopyProgress maps the sidecar's status onto Velero's operation progress.
func imageCopyProgress(st *operation.ImageCopyStatus, ns, name string) velero.OperationProgress {
	p := velero.OperationProgress{NCompleted: int64(st.ImagesDone), NTotal: int64(st.Images)}
	p.Description = fmt.Sprintf("%s %d/%d images: %d blobs sent (%s), %d already in the target", st.Phase, st.ImagesDone, st.Images,
		st.BlobsSent, units.Bytes(st.BytesSent), st.BlobsSkipped)
	if st.Target != "" {
		p.Description += ", to " + st.Target
	}
	if st.Message != "" && !st.Phase.Terminal() {
		p.Description += ": " + st.Message
	}
	header(&p, &st.Header, fmt.Sprintf("image copy of ImageStream %s/%s", ns, name))
	return p
}
