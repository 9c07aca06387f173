package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/sidecar"
)

func newRollbackCommand() *cobra.Command {
	var (
		kubeconfig string
		namespaces []string
		all        bool
	)
	cmd := &cobra.Command{
		Use:   "rollback (--namespace NS ... | --all-namespaces)",
		Short: "Put the source back: unquiesce what a final migration scaled down, restore moved PVs' reclaim policies",
		Long: `Undoes the two changes a migration makes on the source cluster: workloads that a final transfer
quiesced get their replica counts, suspend flags and DaemonSet node selectors back, and PVs that were
switched to Retain for a move get their original reclaim policy back. Run it against the source
cluster if you abandon a migration after its final backup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !all && len(namespaces) == 0 {
				return usageError{fmt.Errorf("name the namespaces to roll back with --namespace, or use --all-namespaces")}
			}
			cfg, err := sidecar.RESTConfig(kubeconfig)
			if err != nil {
				return err
			}
			clients, err := kube.NewClients(cfg, "")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			if all {
				namespaces = nil
			}
			changed, err := quiesce.Rollback(ctx, clients, namespaces)
			for _, c := range changed {
				fmt.Fprintln(cmd.OutOrStdout(), c)
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
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the source cluster (default: $KUBECONFIG, else in-cluster)")
	cmd.Flags().StringSliceVarP(&namespaces, "namespace", "n", nil, "namespace to roll back (repeatable)")
	cmd.Flags().BoolVar(&all, "all-namespaces", false, "roll back every namespace")
	return cmd
}
