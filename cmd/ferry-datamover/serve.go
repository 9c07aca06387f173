package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/datamover"
)

func newServeCommand() *cobra.Command {
	o := datamover.ServeOptions{Listen: net.JoinHostPort("0.0.0.0", strconv.Itoa(datamover.DefaultPort))}
	var readyFile string
	cmd := &cobra.Command{
		Use:   "serve --dir DEST --listen HOST:PORT --certs DIR",
		Short: "Receive a transfer into DEST (stunnel with mutual TLS in front of an rsync daemon)",
		Long: `Serves DEST to one client: stunnel accepts TLS (1.2 or newer) on --listen, requires a client
certificate signed by the CA in DIR/ca.crt, and hands each connection to an rsync daemon that has no
listening socket of its own. Exits 0 once the client has reported completion (after the target was
flushed to disk); non-zero with the reason otherwise. SIGTERM stops it and everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" || o.CertDir == "" {
				return usageError{fmt.Errorf("--dir and --certs are required")}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			o.Log = newLogger()
			if readyFile != "" {
				// For an exec readiness probe: a TCP probe would be a TLS handshake that stunnel
				// logs as a failed one every period.
				o.Ready = func() {
					if err := os.WriteFile(readyFile, nil, 0o600); err != nil {
						o.Log.WithError(err).Warn("writing the ready file")
					}
				}
				defer os.Remove(readyFile)
			}
			return interrupted(ctx, datamover.Serve(ctx, o))
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "target directory to write into")
	cmd.Flags().StringVar(&o.Listen, "listen", o.Listen, "TLS address to listen on, HOST:PORT")
	cmd.Flags().StringVar(&o.CertDir, "certs", "", "directory with the server's ca.crt, tls.crt and tls.key")
	cmd.Flags().StringVar(&readyFile, "ready-file", "", "file created once TLS is accepted on --listen (removed on exit)")
	return cmd
}
