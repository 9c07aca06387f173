package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/requests"
)

func newRequestCommand() *cobra.Command {
	var (
		cluster                        clusterFlags
		veleroNS                       string
		m                              requests.Manual
		typ, storageClass, accessModes string
		quiesceScope                   string
		verify, overwrite              bool
	)
	cmd := &cobra.Command{
		Use:   "request (pvc|imagestream) NAMESPACE/NAME",
		Short: "Ask the data mover, as an admin, to copy one PVC or image stream (a signed request)",
		Long: `Writes a transfer request on a PVC (or an image copy request on an image stream), signed with
ferry's request key, as a migration backup does: the state-only recipe, without a backup. Only
someone who can read Secret ferry-request-key in Velero's namespace can sign: a request a
namespace's users write by hand is refused by the data mover.

The target is the same namespace and name, or ferry-config's namespaceMapping, or --target; the
storage class, access modes and verify come from the PVC's ferry.dev/ annotations and ferry-config
unless given here. Follow it with:
  kubectl -n NAMESPACE get pvc NAME -o jsonpath='{.metadata.annotations.ferry\.dev/transfer-status}'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[1], "/")
			if !ok || ns == "" || name == "" {
				return usageError{fmt.Errorf("want NAMESPACE/NAME, not %q", args[1])}
			}
			m.Type = operation.TransferType(typ)
			if m.Type != operation.Stage && m.Type != operation.Final {
				return usageError{fmt.Errorf("--type must be stage or final, not %q", typ)}
			}
			f := cmd.Flags()
			if f.Changed("storage-class") {
				m.StorageClass = &storageClass
			}
			if f.Changed("access-modes") {
				modes, err := config.ParseAccessModes(accessModes)
				if err != nil {
					return usageError{fmt.Errorf("--access-modes: %w", err)}
				}
				m.AccessModes = modes
			}
			if f.Changed("verify") {
				m.Verify = &verify
			}
			if f.Changed("allow-overwrite") {
				m.Overwrite = &overwrite
			}
			if f.Changed("quiesce-scope") {
				if _, err := config.ParseQuiesceScope(quiesceScope); err != nil {
					return usageError{fmt.Errorf("--quiesce-scope: %w", err)}
				}
				m.QuiesceScope = quiesceScope
			}
			clients, err := cluster.clients(veleroNS)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			switch args[0] {
			case "pvc":
				req, err := requests.RequestTransfer(ctx, clients, ns, name, m)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "requested %s transfer %s of PVC %s/%s to %s\n", req.Type, req.ID, ns, name, req.Target())
			case "imagestream":
				req, err := requests.RequestImageCopy(ctx, clients, ns, name, m)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "requested image copy %s of ImageStream %s/%s to %s\n", req.ID, ns, name, req.Target())
			default:
				return usageError{fmt.Errorf("request pvc or imagestream, not %q", args[0])}
			}
			return nil
		},
	}
	f := cmd.Flags()
	cluster.bind(f, "source cluster")
	f.StringVar(&veleroNS, "velero-namespace", "velero", "Velero's namespace (ferry-config and the request key)")
	f.StringVar(&m.ID, "id", "", "request ID (default: manual-<unix time>); a new ID starts a new transfer")
	f.StringVar(&typ, "type", string(operation.Stage), "stage (the app keeps running) or final (quiesce it first)")
	f.StringVar(&m.Target, "target", "", "target NAMESPACE/NAME (default: namespaceMapping, same name)")
	f.StringVar(&storageClass, "storage-class", "", "storage class of a target PVC ferry creates")
	f.StringVar(&accessModes, "access-modes", "", "access modes of a target PVC ferry creates (e.g. RWX)")
	f.BoolVar(&verify, "verify", false, "compare every file by content after the copy, a difference fails the transfer (default: a final does when the PVC's ferry.dev/verify or ferry-config verify says so, a stage does not)")
	f.BoolVar(&overwrite, "allow-overwrite", false, "fill a target that holds data ferry did not write")
	f.StringVar(&quiesceScope, "quiesce-scope", "", "what a final stops: volumes (the PVC's users) or namespace (every workload in it); default ferry-config quiesceScope")
	return cmd
}
