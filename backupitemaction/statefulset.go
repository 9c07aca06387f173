package backupitemaction

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// StatefulSetAction records, for a migration, how each volume claim template's PVCs are copied
// (storage class and access modes, decided as for the PVCs themselves), so the restore gives the
// templates the same: replicas added on the target later get claims like the copied ones, not
// the source's class. Templates whose PVCs are moved keep the source's.
type StatefulSetAction struct {
	log     logrus.FieldLogger
	clients *kube.Clients
	config  func() (*config.Config, error)
}

var _ biav1.BackupItemAction = (*StatefulSetAction)(nil)

func NewStatefulSetAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *StatefulSetAction {
	return &StatefulSetAction{log: log, clients: clients, config: cfg}
}

func (a *StatefulSetAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"statefulsets.apps"}}, nil
}

func (a *StatefulSetAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, error) {
	_, migrating, _ := migrationType(backup)
	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	if !migrating {
		return u, nil, nil
	}
	var sts appsv1.StatefulSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sts); err != nil {
		return nil, nil, fmt.Errorf("decoding StatefulSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		return u, nil, nil
	}
	cfg, err := a.config()
	if err != nil {
		return nil, nil, fmt.Errorf("StatefulSet %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	record := map[string]operation.ClaimTemplate{}
	for _, tmpl := range sts.Spec.VolumeClaimTemplates {
		choice, copied, err := a.templateChoice(&sts, tmpl, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("StatefulSet %s/%s, claim template %s: %w", sts.Namespace, sts.Name, tmpl.Name, err)
		}
		if copied {
			record[tmpl.Name] = operation.ClaimTemplate{StorageClass: choice.StorageClass, AccessModes: choice.AccessModes}
		}
	}
	if len(record) == 0 {
		return u, nil, nil
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[keys.ClaimTemplates] = operation.EncodeClaimTemplates(record)
	u.SetAnnotations(ann)
	return u, nil, nil
}

// templateChoice is how the template's PVCs are copied: as its first existing PVC (ordinal 0,
// 1, …) is, else as a PVC made from the template would be. copied is false when they are moved.
func (a *StatefulSetAction) templateChoice(sts *appsv1.StatefulSet, tmpl corev1.PersistentVolumeClaim, cfg *config.Config) (*operation.VolumeChoice, bool, error) {
	ctx := context.Background()
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	for i := int32(0); i < max(replicas, 1); i++ {
		name := fmt.Sprintf("%s-%s-%d", tmpl.Name, sts.Name, i)
		pvc, err := a.clients.Kube.CoreV1().PersistentVolumeClaims(sts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading PVC %s/%s: %w", sts.Namespace, name, err)
		}
		pv, err := boundPV(ctx, a.clients.Kube, pvc)
		if err != nil {
			return nil, false, err
		}
		d, err := decide(pvc, pv, cfg)
		if err != nil {
			return nil, false, err
		}
		if d.Action == keys.PVActionMove {
			return nil, false, nil
		}
		choice, err := operation.ResolveVolume(pvc, cfg)
		return choice, true, err
	}
	made := tmpl.DeepCopy()
	made.Namespace, made.Name = sts.Namespace, tmpl.Name+"-"+sts.Name
	choice, err := operation.ResolveVolume(made, cfg)
	return choice, true, err
}
