package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/dashboard/collect"
	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/units"
)

// newStatusCommand is `ferry-datamover status`, also `kubectl ferry status` (the binary installed
// as kubectl-ferry): every transfer and image copy at a glance, with the viewer's credentials.
func newStatusCommand() *cobra.Command {
	var (
		cluster         clusterFlags
		namespaces      []string
		all, watch      bool
		veleroNamespace string
		out             string
	)
	cmd := &cobra.Command{
		Use:   "status [-A | -n NS ...] [-o text|json|yaml] [--watch]",
		Short: "List ferry's transfers and image copies: phase, progress, rate, time left, last success",
		Long: `Prints one line per PVC transfer and image-stream copy that ferry's migrations asked for: namespace,
PVC or image stream, Backup, phase, percent, rate, time left and when a transfer of it last completed.
Every call is made with your kubeconfig's credentials: you see what your RBAC lets you list (what is
hidden is said on stderr). Without -A, the kubeconfig context's namespace (or those given with -n).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains([]string{"text", "json", "yaml"}, out) {
				return usageError{fmt.Errorf("--output: want text, json or yaml, not %q", out)}
			}
			kube, dyn, defaultNS, err := cluster.viewer()
			if err != nil {
				return err
			}
			if !all && len(namespaces) == 0 {
				namespaces = []string{defaultNS}
			}
			if all {
				namespaces = nil
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			col := collect.New(kube, dyn, collect.Options{Namespaces: namespaces, VeleroNamespace: veleroNamespace, DefaultNamespace: defaultNS})
			go col.Run(ctx)
			if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
				return col.Synced(), nil
			}); err != nil {
				return fmt.Errorf("reading the cluster: %w", err)
			}
			print := func() error {
				page := view.Build(col.Snapshot(time.Now()))
				for _, n := range page.Notices {
					fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
				}
				return printStatus(cmd.OutOrStdout(), out, statusRows(page, namespaces), time.Now())
			}
			if err := print(); err != nil || !watch {
				return err
			}
			for {
				select {
				case <-ctx.Done():
					return nil // Ctrl-C ends a watch
				case <-col.Changed():
				}
				// Changes come in bursts (a status every few seconds per PVC): one print a second.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				if out == "text" {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				if err := print(); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	cluster.bind(f, "cluster to look at (the source)")
	f.StringSliceVarP(&namespaces, "namespace", "n", nil, "namespaces to list (default: the kubeconfig context's)")
	f.BoolVarP(&all, "all-namespaces", "A", false, "every namespace you may list")
	f.BoolVarP(&watch, "watch", "w", false, "print again whenever something changes, until interrupted")
	f.StringVar(&veleroNamespace, "velero-namespace", "velero", "Velero's namespace (where the Backups are)")
	f.StringVarP(&out, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// statusRows are the page's rows in the namespaces asked for (nil: all), sorted by namespace,
// kind and name.
func statusRows(page view.Page, namespaces []string) []view.Row {
	rows := []view.Row{}
	for _, r := range view.Rows(page) {
		if namespaces == nil || slices.Contains(namespaces, r.Namespace) {
			rows = append(rows, r)
		}
	}
	slices.SortStableFunc(rows, func(a, b view.Row) int {
		for _, c := range [][2]string{{a.Namespace, b.Namespace}, {a.Kind, b.Kind}, {a.Name, b.Name}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return rows
}

// printStatus writes the rows as a table (like kubectl get) or as JSON or YAML.
func printStatus(w io.Writer, format string, rows []view.Row, now time.Time) error {
	switch format {
	case "json":
		return writeJSON(w, map[string]any{"items": rows})
	case "yaml":
		b, err := yaml.Marshal(map[string]any{"items": rows})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no ferry transfers or image copies")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tBACKUP\tPHASE\tPERCENT\tRATE\tETA\tLAST SUCCESS\tVERIFIED")
	for _, r := range rows {
		rate, eta, last, verified := "-", "-", "-", "-"
		if r.RateBPS > 0 {
			rate = units.Bytes(r.RateBPS) + "/s"
		}
		if r.ETASeconds > 0 {
			eta = (time.Duration(r.ETASeconds) * time.Second).String()
		}
		if r.LastSuccess != nil {
			last = now.Sub(*r.LastSuccess).Round(time.Second).String() + " ago"
		}
		if r.Verified != "" {
			verified = r.Verified
		}
		backup := r.Backup
		if backup == "" {
			backup = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\t%s\t%s\n", r.Namespace, r.Kind, r.Name, backup, r.Phase, r.Percent, rate, eta, last, verified)
	}
	return tw.Flush()
}
