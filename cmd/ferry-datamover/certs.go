package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/dataplane"
)

func newCertsCommand() *cobra.Command {
	var (
		out      string
		validity = dataplane.DefaultCertValidity
	)
	cmd := &cobra.Command{
		Use:   "certs --out DIR",
		Short: "Write a fresh CA plus server and client certificates for one transfer",
		Long: `Writes DIR/server/{ca.crt,tls.crt,tls.key} for "serve" and DIR/client/{ca.crt,tls.crt,tls.key}
for "send": ECDSA P-256 certificates signed by a CA made for this transfer only. The CA's private key
is discarded after signing. Directories are created 0700, files 0600.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			certs, err := dataplane.GenerateCerts(validity)
			if err != nil {
				return usageError{err}
			}
			if err := certs.WriteDir(out); err != nil {
				return fmt.Errorf("writing certificates: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write server/ and client/ into")
	cmd.Flags().DurationVar(&validity, "validity", validity, "how long the certificates are valid")
	return cmd
}
