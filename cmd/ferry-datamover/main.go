// Command ferry-datamover is ferry's data mover: the data plane (`certs`, `serve`, `send`) that
// copies a volume with rsync through a mutually authenticated TLS tunnel, and the sidecar that
// drives it. main only wires the subcommands; the work is in packages dataplane and sidecar.
package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:           "ferry-datamover",
		Short:         "ferry's data mover: copies volumes between clusters with rsync over mutual TLS",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Installed (or linked) as kubectl-ferry it is a kubectl plugin: `kubectl ferry status`.
	if filepath.Base(os.Args[0]) == "kubectl-ferry" {
		root.Use = "kubectl ferry"
	}
	root.AddCommand(newCertsCommand(), newServeCommand(), newSendCommand(), newControllerCommand(), newRollbackCommand(), newRequestCommand(), newDashboardCommand(), newStatusCommand(), newVersionCommand())
	os.Exit(run(root))
}
