package main

import (
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/sidecar"
	"github.com/ferry-dev/ferry/sidecar/images"
	"github.com/ferry-dev/ferry/sidecar/volume"
)

func newControllerCommand() *cobra.Command {
	var logs logFlags
	opts := sidecar.Options{Namespace: os.Getenv("VELERO_NAMESPACE"), MetricsAddress: ":8087", HealthAddress: ":8088", Workers: 4}
	if opts.Namespace == "" {
		opts.Namespace = "velero"
	}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the sidecar: copy every PVC and image stream that carries a ferry request to the target cluster",
		Long: `Runs next to the Velero server (a second container of its pod). It watches PVCs annotated
with a transfer request (by ferry's PVC backup action, or by hand), and for each creates the target
PVC, a server pod there and a client pod here, and copies the volume with rsync over mutually
authenticated TLS, writing progress back on the PVC. Image streams with a copy request get their
images copied registry to registry. Configuration: the ferry-config ConfigMap and the target
kubeconfig Secret in Velero's namespace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := logs.validate(); err != nil {
				return usageError{err}
			}
			ctrl.SetLogger(logs.logr())
			mgr, env, err := sidecar.NewManager(opts)
			if err != nil {
				return err
			}
			if err := volume.Setup(mgr, env, opts.Workers); err != nil {
				return err
			}
			if err := images.Setup(mgr, env, opts.Workers); err != nil {
				return err
			}
			return mgr.Start(ctrl.SetupSignalHandler())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig of the source cluster (default: $KUBECONFIG, else in-cluster)")
	f.StringVar(&opts.Context, "context", "", "kubeconfig context to use (default: its current one)")
	logs.bind(f)
	f.StringVarP(&opts.Namespace, "namespace", "n", opts.Namespace, "Velero's namespace (default: $VELERO_NAMESPACE, else velero)")
	f.StringVar(&opts.MetricsAddress, "metrics-address", opts.MetricsAddress, "address of the Prometheus metrics endpoint (0 disables it)")
	f.StringVar(&opts.HealthAddress, "health-address", opts.HealthAddress, "address of /healthz and /readyz (0 disables them)")
	f.IntVar(&opts.Workers, "workers", opts.Workers, "objects each reconciler works on at once (transfers are bounded by ferry-config's concurrency)")
	return cmd
}
