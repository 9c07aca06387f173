package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/quiesce"
)

func newRollbackCommand() *cobra.Command {
	var (
		cluster    clusterFlags
		namespaces []string
		all        bool
		dryRun     bool
		out        output
	)
	cmd := &cobra.Command{
		Use:   "rollback (--namespace NS ... | --all-namespaces)",
		Short: "Put the source back: unquiesce what a final migration scaled down, restore moved PVs' reclaim policies",
		Long: `Undoes the two changes a migration makes on the source cluster: workloads that a final transfer
quiesced get their replica counts, suspend flags and DaemonSet node selectors back, and PVs that were
switched to Retain for a move get their original reclaim policy back. Run it against the source
cluster if you abandon a migration after its final backup. --dry-run says what it would change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !all && len(namespaces) == 0 {
				return usageError{fmt.Errorf("name the namespaces to roll back with --namespace, or use --all-namespaces")}
			}
			if err := out.validate(); err != nil {
				return usageError{err}
			}
			clients, err := cluster.clients("")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			if all {
				namespaces = nil
			}
			changed, err := quiesce.Rollback(ctx, clients, namespaces, dryRun)
			if out == "json" {
				if changed == nil {
					changed = []quiesce.Change{}
				}
				if werr := writeJSON(cmd.OutOrStdout(), map[string]any{"dryRun": dryRun, "changes": changed}); werr != nil {
					return werr
				}
				return err
			}
			for _, c := range changed {
				if dryRun {
					fmt.Fprintln(cmd.OutOrStdout(), "would:", c)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), c)
				}
			}
			if err != nil {
				return err
			}
			if len(changed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to roll back")
			}
			return nil
		},
	}
	f := cmd.Flags()
	cluster.bind(f, "source cluster")
	f.StringSliceVarP(&namespaces, "namespace", "n", nil, "namespace to roll back (repeatable)")
	f.BoolVar(&all, "all-namespaces", false, "roll back every namespace")
	f.BoolVar(&dryRun, "dry-run", false, "say what would change, change nothing")
	out.bind(f)
	return cmd
}
