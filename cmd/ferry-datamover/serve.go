package main

import (
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/dataplane"
)

func newServeCommand() *cobra.Command {
	o := dataplane.NewServeOptions()
	var logs logFlags
	cmd := &cobra.Command{
		Use:   "serve --dir DEST --listen HOST:PORT --certs DIR",
		Short: "Receive a transfer into DEST (stunnel with mutual TLS in front of an rsync daemon)",
		Long: `Serves DEST to one client: stunnel accepts TLS (1.2 or newer) on --listen, requires a client
certificate signed by the CA in DIR/ca.crt, and hands each connection to an rsync daemon that has no
listening socket of its own. Exits 0 once the client has reported completion (after the target was
flushed to disk); non-zero with the reason otherwise. SIGTERM stops it and everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			if err := logs.validate(); err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			o.Log = logs.logrus()
			return interrupted(ctx, dataplane.Serve(ctx, o))
		},
	}
	o.BindFlags(cmd.Flags())
	logs.bind(cmd.Flags())
	return cmd
}
