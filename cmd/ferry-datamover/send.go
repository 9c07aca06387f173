package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/datamover"
)

func newSendCommand() *cobra.Command {
	var (
		o        = datamover.SendOptions{Streams: datamover.DefaultStreams, MaxAttempts: datamover.DefaultMaxAttempts, Backoff: datamover.DefaultBackoff}
		progress = string(datamover.ProgressHuman)
	)
	cmd := &cobra.Command{
		Use:   "send --dir SRC --to HOST:PORT --certs DIR",
		Short: "Copy SRC to a `serve` (rsync through a mutually authenticated TLS tunnel)",
		Long: `Copies SRC to the server at --to: several rsync streams, each through its own stunnel client that
verifies the server against DIR/ca.crt, then the deletions and the root's attributes, then a flush of
the target to disk. A re-run moves only what changed. Transient failures (connection refused or cut,
timeouts, rsync codes 5, 10, 12, 23, 30, 35) are retried with exponential backoff.

Exit status: 0 when the target holds the source (files that vanished during the copy are a warning),
rsync's exit code when rsync failed for good, 1 for other failures, 2 for usage errors.
With --progress=json, stdout carries only JSON events, one per line; diagnostics go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" || o.To == "" || o.CertDir == "" {
				return usageError{fmt.Errorf("--dir, --to and --certs are required")}
			}
			switch datamover.ProgressMode(progress) {
			case datamover.ProgressHuman, datamover.ProgressJSON, datamover.ProgressNone:
			default:
				return usageError{fmt.Errorf("--progress must be human, json or none, not %q", progress)}
			}
			if o.Streams < 1 || o.BwLimitKBps < 0 || o.MaxAttempts < 1 {
				return usageError{fmt.Errorf("--streams and --max-attempts must be at least 1, --bwlimit not negative")}
			}
			o.Progress = datamover.ProgressMode(progress)
			o.Out = cmd.OutOrStdout()
			o.Log = newLogger()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			_, err := datamover.Send(ctx, o)
			return interrupted(ctx, err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "source directory to copy (only read)")
	f.StringVar(&o.To, "to", "", "server address, HOST:PORT")
	f.StringVar(&o.CertDir, "certs", "", "directory with the client's ca.crt, tls.crt and tls.key")
	f.StringVar(&o.SNI, "sni", "", "TLS server name to send (default: the host of --to when it is a name)")
	f.BoolVar(&o.Checksum, "checksum", false, "compare file contents instead of size and mtime (verify pass)")
	f.BoolVar(&o.Compress, "compress", false, "compress file data on the wire (slow links only)")
	f.IntVar(&o.BwLimitKBps, "bwlimit", 0, "limit the whole transfer to this many KiB/s (0: none)")
	f.IntVar(&o.Streams, "streams", o.Streams, "parallel rsync streams")
	f.StringVar(&progress, "progress", progress, "progress output: human, json or none")
	f.IntVar(&o.MaxAttempts, "max-attempts", o.MaxAttempts, "attempts before giving up on transient failures")
	f.DurationVar(&o.Backoff, "backoff", o.Backoff, "wait after the first failed attempt; doubles each time, up to a minute")
	return cmd
}
