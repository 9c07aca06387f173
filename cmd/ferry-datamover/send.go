package main

import (
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/dataplane"
)

func newSendCommand() *cobra.Command {
	o := dataplane.NewSendOptions()
	var logs logFlags
	cmd := &cobra.Command{
		Use:   "send --dir SRC --to HOST:PORT --certs DIR",
		Short: "Copy SRC to a `serve` (rsync through a mutually authenticated TLS tunnel)",
		Long: `Copies SRC to the server at --to: several rsync streams, each through its own stunnel client that
verifies the server against DIR/ca.crt, then the deletions and the root's attributes, then a flush of
the target to disk. A re-run moves only what changed. Transient failures (connection refused or cut,
timeouts, rsync codes 5, 10, 12, 23, 30, 35) are retried with exponential backoff.

--verify adds a pass after the copy that compares every file by content (reading all of it on both
sides) and lists what differs; a difference fails the attempt, and the next one copies by content.

Exit status: 0 when the target holds the source (files that vanished during the copy are a warning),
rsync's exit code when rsync failed for good, 65 when the verify pass found differences again after
a copy by content, 1 for other failures, 2 for usage errors.
With --progress=json, stdout carries only JSON reports, one per line; diagnostics go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			if err := logs.validate(); err != nil {
				return usageError{err}
			}
			o.Out = cmd.OutOrStdout()
			o.Log = logs.logrus()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			_, err := dataplane.Send(ctx, o)
			return interrupted(ctx, err)
		},
	}
	o.BindFlags(cmd.Flags())
	logs.bind(cmd.Flags())
	return cmd
}
