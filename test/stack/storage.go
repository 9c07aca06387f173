package stack

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
)

// Storage classes of the stack. All are served by kube-controller-manager's host-path
// provisioner (volumes are folders under /tmp/hostpath_pv) and bind immediately, since no
// scheduler would ever pick a node for WaitForFirstConsumer.
const (
	// StorageClassStandard is the default class of both clusters.
	StorageClassStandard = "standard"
	// StorageClassFast exists on the target only, for storage-class mapping.
	StorageClassFast = "fast"

	hostPathProvisioner = "kubernetes.io/host-path"
)

func (c *Cluster) storageClasses() []string {
	if c.index == 0 {
		return []string{StorageClassStandard}
	}
	return []string{StorageClassStandard, StorageClassFast}
}

func (c *Cluster) createStorageClasses(ctx context.Context) error {
	immediate := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimDelete
	for _, name := range c.storageClasses() {
		sc := &storagev1.StorageClass{
			ObjectMeta:        metav1.ObjectMeta{Name: name},
			Provisioner:       hostPathProvisioner,
			ReclaimPolicy:     &reclaim,
			VolumeBindingMode: &immediate,
		}
		if name == StorageClassStandard {
			sc.Annotations = map[string]string{keys.DefaultStorageClass: "true"}
		}
		if _, err := c.Kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating StorageClass %s: %w", name, err)
		}
	}
	return nil
}
