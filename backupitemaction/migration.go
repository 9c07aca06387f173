// Package backupitemaction holds ferry's Velero BackupItemActions, one per file.
package backupitemaction

import (
	"fmt"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/transfer"
)

// migrationType reads the ferry.dev/migration label of a Backup. ok is false for an ordinary
// backup; a label with another value is an error, because the user meant a migration and a typo
// must not silently turn it into an ordinary backup.
func migrationType(backup *velerov1.Backup) (t transfer.Type, ok bool, err error) {
	v, found := backup.Labels[keys.Migration]
	if !found {
		return "", false, nil
	}
	switch transfer.Type(v) {
	case transfer.Stage, transfer.Final:
		return transfer.Type(v), true, nil
	}
	return "", false, fmt.Errorf("backup %s has label %s=%q: want %q or %q", backup.Name, keys.Migration, v, transfer.Stage, transfer.Final)
}

// finalizing reports whether Velero is re-running actions on post-operation items, when no new
// operation may start.
func finalizing(backup *velerov1.Backup) bool {
	p := backup.Status.Phase
	return p == velerov1.BackupPhaseFinalizing || p == velerov1.BackupPhaseFinalizingPartiallyFailed
}
