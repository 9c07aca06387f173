// Package backupitemaction holds ferry's Velero BackupItemActions, one per file.
package backupitemaction

import (
	"context"
	"fmt"
	"strconv"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// migrationType reads the ferry.dev/migration label of a Backup. ok is false for an ordinary
// backup; a label with another value is an error, because the user meant a migration and a typo
// must not silently turn it into an ordinary backup.
func migrationType(backup *velerov1.Backup) (t operation.TransferType, ok bool, err error) {
	v, found := backup.Labels[keys.Migration]
	if !found {
		return "", false, nil
	}
	switch operation.TransferType(v) {
	case operation.Stage, operation.Final:
		return operation.TransferType(v), true, nil
	}
	return "", false, fmt.Errorf("backup %s has label %s=%q: want %q or %q", backup.Name, keys.Migration, v, operation.Stage, operation.Final)
}

// finalizing reports whether Velero is re-running actions on post-operation items, when no new
// operation may start.
func finalizing(backup *velerov1.Backup) bool {
	p := backup.Status.Phase
	return p == velerov1.BackupPhaseFinalizing || p == velerov1.BackupPhaseFinalizingPartiallyFailed
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

// allowOverwrite is whether a backup's transfers and copies may fill targets holding data ferry
// did not write: the Backup's ferry.dev/allow-overwrite, else ferry-config's allowOverwrite.
// Only people who can create Backups or edit ferry-config decide it.
func allowOverwrite(backup *velerov1.Backup, cfg *config.Config) (bool, error) {
	v, ok := backup.Annotations[keys.AllowOverwrite]
	if !ok {
		return cfg.AllowOverwrite, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("backup %s: annotation %s=%q: want true or false", backup.Name, keys.AllowOverwrite, v)
	}
	return b, nil
}

// quiesceNamespace is whether a final backup quiesces every workload of a migrated PVC's
// namespace: the Backup's ferry.dev/quiesce-scope, else ferry-config's quiesceScope. Like
// overwriting, it is decided by people who can create Backups or edit ferry-config.
func quiesceNamespace(backup *velerov1.Backup, cfg *config.Config) (bool, error) {
	scope := cfg.QuiesceScope
	if v, ok := backup.Annotations[keys.QuiesceScope]; ok {
		var err error
		if scope, err = config.ParseQuiesceScope(v); err != nil {
			return false, fmt.Errorf("backup %s: annotation %s=%q: %w", backup.Name, keys.QuiesceScope, v, err)
		}
	}
	return scope == keys.QuiesceScopeNamespace, nil
}

// verifyCopy is whether a PVC's transfer verifies its copy (every file compared by content on
// both sides after the copy): the Backup's ferry.dev/verify, for a stage too; else, for a
// final, the PVC's ferry.dev/verify or ferry-config verify (VolumeChoice.VerifyFor).
func verifyCopy(backup *velerov1.Backup, choice *operation.VolumeChoice, mtype operation.TransferType) (bool, error) {
	v, ok := backup.Annotations[keys.Verify]
	if !ok {
		return choice.VerifyFor(mtype), nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("backup %s: annotation %s=%q: want true or false", backup.Name, keys.Verify, v)
	}
	return b, nil
}

// leaseGrace is how much longer than its own duration a Lease may go unrenewed before ferry
// says the data mover is not running: a restarting data mover takes the Lease again within
// about its duration.
const leaseGrace = 30 * time.Second

// sidecarRunning fails fast, with the fix in the message, when no ferry-datamover runs next to
// this Velero: never installed (no Lease), or stopped (the Lease not renewed within its
// duration). Without it the operation would wait for the whole item-operation timeout.
func sidecarRunning(ctx context.Context, clients *kube.Clients) error {
	l, err := clients.Kube.CoordinationV1().Leases(clients.Namespace).Get(ctx, operation.SidecarLease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the ferry-datamover sidecar is not running next to Velero (no Lease %s/%s); add it to the Velero deployment (see deploy/ in the ferry repository)", clients.Namespace, operation.SidecarLease)
	}
	if err != nil {
		return fmt.Errorf("checking for the ferry-datamover sidecar: %w", err)
	}
	duration := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if l.Spec.RenewTime == nil {
		return fmt.Errorf("ferry-datamover is not running: its Lease %s/%s was never renewed; check its pod (kubectl -n %s logs deploy/ferry-datamover)", clients.Namespace, operation.SidecarLease, clients.Namespace)
	}
	if age := time.Since(l.Spec.RenewTime.Time); age > duration+leaseGrace {
		return fmt.Errorf("ferry-datamover is not running: its Lease %s/%s was last renewed %s ago (it renews every few seconds); check its pod (kubectl -n %s logs deploy/ferry-datamover)", clients.Namespace, operation.SidecarLease, age.Round(time.Second), clients.Namespace)
	}
	return nil
}
