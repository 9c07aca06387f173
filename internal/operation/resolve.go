package operation

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// VolumeChoice is how a copied PVC lands on the target.
type VolumeChoice struct {
	// StorageClass of a target PVC ferry creates; nil: the target's default class.
	StorageClass *string
	AccessModes  []corev1.PersistentVolumeAccessMode
	// Verify: the PVC's finals verify their copy (VerifyFor).
	Verify bool
}

// VerifyFor is whether a transfer of type t verifies its copy (a pass that compares every file
// by content on both sides) when its Backup or requester does not say: a final does when the
// PVC or ferry-config asks. A stage does not: it copies a running application, and every file
// written since its copy would be a difference.
func (c *VolumeChoice) VerifyFor(t TransferType) bool {
	return c.Verify && t == Final
}

// ResolveVolume decides, once for the plugin and the sidecar alike, how a PVC is copied: its
// own ferry.dev/storage-class, ferry.dev/access-modes and ferry.dev/verify annotations, else
// ferry-config's mappings and defaults, else the source PVC's own class and modes.
func ResolveVolume(pvc *corev1.PersistentVolumeClaim, cfg *config.Config) (*VolumeChoice, error) {
	id := pvc.Namespace + "/" + pvc.Name
	c := &VolumeChoice{Verify: cfg.Verify}
	if v, ok := pvc.Annotations[keys.StorageClass]; ok {
		v = strings.TrimSpace(v)
		c.StorageClass = &v
	} else {
		var source string
		if pvc.Spec.StorageClassName != nil {
			source = *pvc.Spec.StorageClassName
		}
		if target, mapped := cfg.TargetStorageClass(source); mapped {
			c.StorageClass = &target
		} else if pvc.Spec.StorageClassName != nil {
			c.StorageClass = &source
		}
	}
	if v, ok := pvc.Annotations[keys.AccessModes]; ok {
		modes, err := config.ParseAccessModes(v)
		if err != nil {
			return nil, fmt.Errorf("PVC %s: annotation %s: %w", id, keys.AccessModes, err)
		}
		c.AccessModes = modes
	} else {
		c.AccessModes = cfg.TargetAccessModes(pvc.Spec.AccessModes)
	}
	if v, ok := pvc.Annotations[keys.Verify]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("PVC %s: annotation %s=%q: want true or false", id, keys.Verify, v)
		}
		c.Verify = b
	}
	return c, nil
}

// Resolve fills the choices the request leaves unset (a request written by hand names only an
// ID) with ResolveVolume's.
func (r *TransferRequest) Resolve(pvc *corev1.PersistentVolumeClaim, cfg *config.Config) error {
	if r.StorageClass != nil && len(r.AccessModes) > 0 && r.Verify != nil {
		return nil
	}
	c, err := ResolveVolume(pvc, cfg)
	if err != nil {
		return err
	}
	if r.StorageClass == nil {
		r.StorageClass = c.StorageClass
	}
	if len(r.AccessModes) == 0 {
		r.AccessModes = c.AccessModes
	}
	if r.Verify == nil {
		v := c.VerifyFor(r.Type)
		r.Verify = &v
	}
	return nil
}
