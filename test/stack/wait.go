package stack

import (
	"context"
	"fmt"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
)

const pollInterval = 500 * time.Millisecond

// CreateBackup runs `velero backup create NAME ARGS...` on the cluster and waits for the
// backup to finish (see WaitBackup).
func (c *Cluster) CreateBackup(ctx context.Context, name string, args ...string) (*velerov1.Backup, error) {
	if _, err := c.Velero(ctx, append([]string{"backup", "create", name}, args...)...); err != nil {
		return nil, err
	}
	return c.WaitBackup(ctx, name)
}

// CreateRestore runs `velero restore create NAME ARGS...` on the cluster and waits for the
// restore to finish (see WaitRestore).
func (c *Cluster) CreateRestore(ctx context.Context, name string, args ...string) (*velerov1.Restore, error) {
	if _, err := c.Velero(ctx, append([]string{"restore", "create", name}, args...)...); err != nil {
		return nil, err
	}
	return c.WaitRestore(ctx, name)
}

// WaitBackup waits until the Backup is in a final phase and returns it. The error is nil only
// for Completed; otherwise (and on timeout) it carries `velero backup describe --details`, the
// tail of the backup's log and any stack problem, so a failing test shows why.
func (c *Cluster) WaitBackup(ctx context.Context, name string) (*velerov1.Backup, error) {
	var b velerov1.Backup
	err := c.poll(ctx, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, crclient.ObjectKey{Namespace: c.VeleroNamespace, Name: name}, &b); err != nil {
			return false, ignoreNotFound(err)
		}
		switch b.Status.Phase {
		case velerov1.BackupPhaseCompleted, velerov1.BackupPhasePartiallyFailed, velerov1.BackupPhaseFailed,
			velerov1.BackupPhaseFailedValidation:
			return true, nil
		}
		return false, nil
	})
	if err == nil && b.Status.Phase == velerov1.BackupPhaseCompleted {
		return &b, nil
	}
	what := fmt.Sprintf("backup %s on the %s cluster", name, c.Name)
	if err != nil {
		what += fmt.Sprintf(" did not finish (phase %q): %v", b.Status.Phase, err)
	} else {
		what += fmt.Sprintf(" ended %s (errors %d, warnings %d, failure %q, validation errors %v)",
			b.Status.Phase, b.Status.Errors, b.Status.Warnings, b.Status.FailureReason, b.Status.ValidationErrors)
	}
	if b.Name == "" {
		return nil, fmt.Errorf("%s%s", what, c.diagnostics(nil))
	}
	return &b, fmt.Errorf("%s%s", what, c.diagnostics([][]string{{"backup", "describe", name, "--details"}, {"backup", "logs", name}}))
}

// WaitRestore is WaitBackup for a Restore.
func (c *Cluster) WaitRestore(ctx context.Context, name string) (*velerov1.Restore, error) {
	var r velerov1.Restore
	err := c.poll(ctx, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, crclient.ObjectKey{Namespace: c.VeleroNamespace, Name: name}, &r); err != nil {
			return false, ignoreNotFound(err)
		}
		switch r.Status.Phase {
		case velerov1.RestorePhaseCompleted, velerov1.RestorePhasePartiallyFailed, velerov1.RestorePhaseFailed,
			velerov1.RestorePhaseFailedValidation:
			return true, nil
		}
		return false, nil
	})
	if err == nil && r.Status.Phase == velerov1.RestorePhaseCompleted {
		return &r, nil
	}
	what := fmt.Sprintf("restore %s on the %s cluster", name, c.Name)
	if err != nil {
		what += fmt.Sprintf(" did not finish (phase %q): %v", r.Status.Phase, err)
	} else {
		what += fmt.Sprintf(" ended %s (errors %d, warnings %d, failure %q, validation errors %v)",
			r.Status.Phase, r.Status.Errors, r.Status.Warnings, r.Status.FailureReason, r.Status.ValidationErrors)
	}
	if r.Name == "" {
		return nil, fmt.Errorf("%s%s", what, c.diagnostics(nil))
	}
	return &r, fmt.Errorf("%s%s", what, c.diagnostics([][]string{{"restore", "describe", name, "--details"}, {"restore", "logs", name}}))
}

// WaitBackupSynced waits until a backup made on the other cluster shows up here through the
// shared bucket. Velero syncs a BSL at most once a minute (a fixed period in Velero), so this
// can take up to about a minute.
func (c *Cluster) WaitBackupSynced(ctx context.Context, name string) (*velerov1.Backup, error) {
	var b velerov1.Backup
	err := c.poll(ctx, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, crclient.ObjectKey{Namespace: c.VeleroNamespace, Name: name}, &b); err != nil {
			return false, ignoreNotFound(err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup %s did not appear on the %s cluster through the shared bucket: %v%s", name, c.Name, err, c.diagnostics(nil))
	}
	return &b, nil
}

// poll calls done every pollInterval until it reports true, fails, or ctx ends; a stack process
// that died meanwhile ends the wait early.
func (c *Cluster) poll(ctx context.Context, done func(context.Context) (bool, error)) error {
	for {
		ok, err := done(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p := c.stack.Problems(); len(p) > 0 {
			return fmt.Errorf("the stack broke: %s", strings.Join(p, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// diagnostics runs velero CLI commands (e.g. describe, logs) and adds the tails of their output,
// of the Velero server log, and any stack problems.
func (c *Cluster) diagnostics(veleroCmds [][]string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, p := range c.stack.Problems() {
		fmt.Fprintf(&b, "\nPROBLEM: %s", p)
	}
	for _, args := range veleroCmds {
		out, err := c.Velero(ctx, args...)
		if err != nil {
			out += "\n(" + err.Error() + ")"
		}
		fmt.Fprintf(&b, "\n----- velero %s (last 60 lines) -----\n%s", strings.Join(args, " "), lastLines(out, 60))
	}
	if c.velero != nil {
		fmt.Fprintf(&b, "\n----- %s (last 40 lines) -----\n%s", c.velero.LogPath, c.velero.Tail(40))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
