package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/dashboard"
	"github.com/ferry-dev/ferry/dashboard/collect"
)

func newDashboardCommand() *cobra.Command {
	var (
		cluster         clusterFlags
		namespaces      []string
		veleroNamespace string
		listen          string
		allowCancel     bool
		hosts           []string
	)
	cmd := &cobra.Command{
		Use:   "dashboard [--kubeconfig FILE] [--context NAME] [-n NS ...] [--listen 127.0.0.1:8089]",
		Short: "Serve a local web page that shows ferry's migrations live, with your own credentials",
		Long: `Serves, on loopback, a read-only page of ferry's migrations: stage and final backups grouped by
namespace and schedule, each PVC's progress, rate, time left and last successful transfer, each image
stream's images and blobs, failures with their fix, and the PVCs' Events. Every call to the cluster
is made with your kubeconfig's credentials, so the page shows what your RBAC lets you see (what it
hides is listed as a notice). With --allow-cancel a Cancel button appears where you may patch the PVC
or image stream; anyone who can reach the address can then use it with your credentials, so keep
the default loopback address on a shared host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return usageError{fmt.Errorf("--listen: %w", err)}
			}
			defer ln.Close()
			kube, dyn, defaultNS, err := cluster.viewer()
			if err != nil {
				return err
			}
			// Ctrl-C is how a dashboard ends: a clean stop, exit 0.
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			col := collect.New(kube, dyn, collect.Options{Namespaces: namespaces, VeleroNamespace: veleroNamespace, DefaultNamespace: defaultNS})
			srv := dashboard.New(col, kube, dyn, dashboard.Options{AllowCancel: allowCancel, Hosts: hosts})
			go col.Run(ctx)
			go srv.Run(ctx)
			hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = hs.Shutdown(shutdown)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "ferry dashboard: http://%s/\n", ln.Addr())
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	cluster.bind(f, "cluster to watch")
	f.StringSliceVarP(&namespaces, "namespace", "n", nil, "namespaces to show when you may not list cluster-wide (default: those you may list, else the kubeconfig's)")
	f.StringVar(&veleroNamespace, "velero-namespace", "velero", "Velero's namespace (where the Backups are)")
	f.StringVar(&listen, "listen", "127.0.0.1:8089", "address to serve on; keep it on loopback unless the host is yours alone")
	f.BoolVar(&allowCancel, "allow-cancel", false, "offer a Cancel button where you may patch the PVC or image stream")
	f.StringSliceVar(&hosts, "accept-host", nil, "host names (besides localhost and IP addresses) the page may be requested as, e.g. an alias in /etc/hosts")
	return cmd
}
