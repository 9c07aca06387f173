package sidecar

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

var (
	backups              = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}
	deleteBackupRequests = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "deletebackuprequests"}
)

// BackupGone says why the Backup that asked for an operation no longer wants it — it was
// deleted (or made again under its name), or someone asked Velero to delete it — and "" while
// it stands. Velero refuses to delete a backup whose plugin operations still run, so asking is
// the user's intent: ferry cancels, the backup ends, and `velero backup delete` then succeeds.
func (e *Env) BackupGone(ctx context.Context, name string, uid types.UID) (string, error) {
	b, err := e.Source.Dynamic.Resource(backups).Namespace(e.Source.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("its Backup %s was deleted", name), nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Backup %s/%s: %w", e.Source.Namespace, name, err)
	}
	if b.GetUID() != uid {
		return fmt.Sprintf("its Backup %s was deleted (a new one has its name)", name), nil
	}
	if b.GetDeletionTimestamp() != nil {
		return fmt.Sprintf("its Backup %s is being deleted", name), nil
	}
	dbrs, err := e.Source.Dynamic.Resource(deleteBackupRequests).Namespace(e.Source.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing DeleteBackupRequests in %s: %w", e.Source.Namespace, err)
	}
	for _, d := range dbrs.Items {
		if n, _, _ := unstructured.NestedString(d.Object, "spec", "backupName"); n == name {
			return fmt.Sprintf("velero backup delete %s was asked for", name), nil
		}
	}
	return "", nil
}
