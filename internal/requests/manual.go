package requests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// Manual is what an admin asks for with `ferry-datamover request`: what a backup would ask,
// with the choices the admin names instead of the Backup's.
type Manual struct {
	// ID of the request; "" makes one ("manual-<unix time>").
	ID string
	// Type: stage (default) or final.
	Type operation.TransferType
	// Target "namespace/name"; "": ferry-config's namespaceMapping, same name.
	Target string
	// StorageClass, AccessModes, Verify override ferry-config's choice for the PVC (Verify
	// also for a stage, which otherwise does not verify).
	StorageClass *string
	AccessModes  []corev1.PersistentVolumeAccessMode
	Verify       *bool
	// Overwrite lets the transfer fill a target ferry did not write (ferry-config allowOverwrite
	// otherwise).
	Overwrite *bool
	// QuiesceScope of a final: "volumes" or "namespace"; "": ferry-config's quiesceScope.
	QuiesceScope string
	Now          time.Time
}

// RequestTransfer writes a signed transfer request on PVC namespace/name and returns it.
func RequestTransfer(ctx context.Context, clients *kube.Clients, namespace, name string, m Manual) (*operation.TransferRequest, error) {
	cfg, err := config.Load(ctx, clients.Kube, clients.Namespace)
	if err != nil {
		return nil, err
	}
	pvc, err := clients.Kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading PVC %s/%s: %w", namespace, name, err)
	}
	choice, err := operation.ResolveVolume(pvc, cfg)
	if err != nil {
		return nil, err
	}
	base, err := m.request(cfg, namespace, name)
	if err != nil {
		return nil, err
	}
	req := &operation.TransferRequest{Request: base, Type: m.Type, StorageClass: choice.StorageClass, AccessModes: choice.AccessModes}
	if req.Type == "" {
		req.Type = operation.Stage
	}
	verify := choice.VerifyFor(req.Type)
	req.Verify = &verify
	if m.StorageClass != nil {
		req.StorageClass = m.StorageClass
	}
	if len(m.AccessModes) > 0 {
		req.AccessModes = m.AccessModes
	}
	if m.Verify != nil {
		req.Verify = m.Verify
	}
	scope := cfg.QuiesceScope
	if m.QuiesceScope != "" {
		scope = m.QuiesceScope
	}
	req.QuiesceNamespace = req.Type == operation.Final && scope == keys.QuiesceScopeNamespace
	if err := FinalUnderWay(pvc, req); err != nil {
		return nil, err
	}
	// What the sidecar parses must be what is signed: a bad choice fails here, not there.
	if _, err := operation.ParseTransferRequest(namespace, name, req.Annotations()); err != nil {
		return nil, err
	}
	return req, Write(ctx, clients, operation.TransferKeys, pvc.UID, namespace, name, req.Annotations(), m.now(), PVCPatch(clients, namespace, name))
}

var imageStreams = kube.ImageGV.WithResource("imagestreams")

// RequestImageCopy writes a signed image copy request on ImageStream namespace/name.
func RequestImageCopy(ctx context.Context, clients *kube.Clients, namespace, name string, m Manual) (*operation.ImageCopyRequest, error) {
	cfg, err := config.Load(ctx, clients.Kube, clients.Namespace)
	if err != nil {
		return nil, err
	}
	streams := clients.Dynamic.Resource(imageStreams).Namespace(namespace)
	is, err := streams.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading ImageStream %s/%s: %w", namespace, name, err)
	}
	base, err := m.request(cfg, namespace, name)
	if err != nil {
		return nil, err
	}
	req := &operation.ImageCopyRequest{Request: base}
	if _, err := operation.ParseImageCopyRequest(namespace, name, req.Annotations()); err != nil {
		return nil, err
	}
	return req, Write(ctx, clients, operation.ImageCopyKeys, is.GetUID(), namespace, name, req.Annotations(), m.now(), func(ctx context.Context, body []byte) error {
		_, err := streams.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	})
}

// request resolves the parts every request has.
func (m Manual) request(cfg *config.Config, namespace, name string) (operation.Request, error) {
	r := operation.Request{ID: m.ID, TargetNamespace: namespace, TargetName: name, Overwrite: cfg.AllowOverwrite}
	if r.ID == "" {
		r.ID = "manual-" + strconv.FormatInt(m.now().Unix(), 10)
	}
	if t, ok := cfg.NamespaceMapping[namespace]; ok {
		r.TargetNamespace = t
	}
	if m.Target != "" {
		ns, n, ok := strings.Cut(m.Target, "/")
		if !ok || ns == "" || n == "" {
			return r, fmt.Errorf("--target %q: want namespace/name", m.Target)
		}
		r.TargetNamespace, r.TargetName = ns, n
	}
	if m.Overwrite != nil {
		r.Overwrite = *m.Overwrite
	}
	return r, nil
}

func (m Manual) now() time.Time {
	if m.Now.IsZero() {
		return time.Now()
	}
	return m.Now
}
