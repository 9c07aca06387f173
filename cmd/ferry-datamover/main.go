// Command ferry-datamover is ferry's data mover: the data plane (`certs`, `serve`, `send`) that
// copies a volume with rsync through a mutually authenticated TLS tunnel, and the sidecar that
// drives it. main only wires the subcommands; the work is in packages dataplane and sidecar.
package main

import (
	"os"

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
	root.AddCommand(newCertsCommand(), newServeCommand(), newSendCommand(), newControllerCommand(), newRollbackCommand(), newRequestCommand(), newDashboardCommand(), newVersionCommand())
	os.Exit(run(root))
}
