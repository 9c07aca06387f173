package backupitemaction

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// decision is what ferry does with one PVC and its PV in a migration (how a copy lands is
// operation.ResolveVolume's to say).
type decision struct {
	// Action is keys.PVActionCopy or keys.PVActionMove.
	Action string
	// Reason explains a default that was overridden (e.g. move requested by config, PV not movable).
	Reason string
}

// boundPV is the PV a PVC is bound to, nil when it is unbound or the PV is gone (decide says
// why such a PVC cannot be moved).
func boundPV(ctx context.Context, k kubernetes.Interface, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	if pvc.Spec.VolumeName == "" {
		return nil, nil
	}
	pv, err := k.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading PV %s: %w", pvc.Spec.VolumeName, err)
	}
	return pv, nil
}

// decide resolves move or copy for a PVC (and its PV, nil when unbound) from the PVC's own
// annotations, then the config. An explicit per-PVC choice that cannot be honoured is an error;
// a config default that cannot be honoured falls back to copy.
func decide(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, cfg *config.Config) (*decision, error) {
	id := pvc.Namespace + "/" + pvc.Name
	d := &decision{Action: cfg.DefaultPVAction}
	explicit := false
	if v, ok := pvc.Annotations[keys.PVAction]; ok {
		if v != keys.PVActionCopy && v != keys.PVActionMove {
			return nil, fmt.Errorf("PVC %s: annotation %s=%q: want %q or %q", id, keys.PVAction, v, keys.PVActionCopy, keys.PVActionMove)
		}
		d.Action, explicit = v, true
	}
	if d.Action == keys.PVActionMove {
		if why := notMovable(pv, cfg); why != "" {
			if explicit {
				return nil, fmt.Errorf("PVC %s asks to be moved (%s=move) but %s; copy it instead or add its CSI driver to moveDrivers in ferry-config", id, keys.PVAction, why)
			}
			d.Action, d.Reason = keys.PVActionCopy, "copied instead of moved: "+why
		}
	}
	return d, nil
}

// notMovable says why the target cluster could not mount pv's storage, or "" when it could:
// in-tree NFS and the CSI drivers listed in moveDrivers reach shared storage by address.
func notMovable(pv *corev1.PersistentVolume, cfg *config.Config) string {
	switch {
	case pv == nil:
		return "it is not bound to a PV"
	case pv.Spec.NFS != nil:
		return ""
	case pv.Spec.CSI != nil && cfg.IsMoveDriver(pv.Spec.CSI.Driver):
		return ""
	case pv.Spec.CSI != nil:
		return fmt.Sprintf("its PV %s uses CSI driver %s, which is not in moveDrivers", pv.Name, pv.Spec.CSI.Driver)
	}
	return fmt.Sprintf("its PV %s is not on shared storage the target can reach (NFS or a CSI driver in moveDrivers)", pv.Name)
}
