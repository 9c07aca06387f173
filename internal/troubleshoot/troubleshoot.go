// Package troubleshoot is the one table of known failures and their fixes. The README's
// Troubleshooting table is this table in Markdown (a test keeps them equal), and the dashboard
// shows the fix next to a failure whose message matches a row.
package troubleshoot

import "strings"

// Entry is one row: what a user sees, why, and what to do. Match lists substrings of the
// message ferry writes for this failure; an entry without Match is advice for the README only.
type Entry struct {
	See   string
	Fix   string
	Match []string
}

// Table is the Troubleshooting table, in the README's order.
var Table = []Entry{
	{
		See:   "Backup `PartiallyFailed`: \"the ferry-datamover sidecar is not running next to Velero (no Lease velero/ferry-datamover)\"",
		Fix:   "The sidecar was never installed. Add it (Install, above). Ordinary backups are not affected.",
		Match: []string{"sidecar is not running next to Velero"},
	},
	{
		See:   "\"the target cluster's kubeconfig Secret velero/ferry-target does not exist\"",
		Fix:   "Create it: `kubectl -n velero create secret generic ferry-target --from-file=kubeconfig=…`.",
		Match: []string{"kubeconfig Secret"},
	},
	{
		See:   "\"storage class \"gold\" does not exist on the target cluster (it has: …)\"",
		Fix:   "Fix `storageClassMapping` in ferry-config or the PVC's `ferry.dev/storage-class`. Nothing was created or deleted.",
		Match: []string{"does not exist on the target cluster"},
	},
	{
		See:   "\"Preparing timed out after 10m0s: …\"",
		Fix:   "The target side never got ready; the message says what it waited for last: an unreachable API server, a LoadBalancer without an address (try `endpointType: NodePort` or `Route`), a server pod that cannot be scheduled or admitted (on OpenShift apply `deploy/openshift`). Raise `prepareTimeout` for slow load balancers.",
		Match: []string{"Preparing timed out after"},
	},
	{
		See:   "\"pod app/x mounts PVC data and has no controller to scale down\"",
		Fix:   "A final transfer will not delete a bare pod. Stop it yourself and run the final backup again.",
		Match: []string{"has no controller to scale down"},
	},
	{
		See:   "\"the PVC is ReadWriteOncePod and pod … uses it\"",
		Fix:   "Such a volume can only be read after quiesce: run a final backup.",
		Match: []string{"is ReadWriteOncePod and pod"},
	},
	{
		See:   "A restore error \"its data was copied to shop-prod/data but this restore puts it in shop/data\"",
		Fix:   "Restore with the mapping the backup used: `--namespace-mappings shop:shop-prod`.",
		Match: []string{"but this restore puts it in"},
	},
	{
		See:   "\"transfer … was refused: the request is not signed\" (or \"does not match the request\")",
		Fix:   "The PVC's transfer request was written or changed by hand. Only Velero's plugins and `ferry-datamover request` (an admin who can read `velero/ferry-request-key`) can start a transfer. Nothing was created.",
		Match: []string{"the request is not signed", "does not match the request"},
	},
	{
		See:   "\"target PVC … holds data ferry did not write\" / \"… copied from another PVC\"",
		Fix:   "Ferry does not overwrite a target it did not fill from this PVC. Check the namespace mapping; if the target really should be replaced, allow it: `--annotations ferry.dev/allow-overwrite=true` on the Backup.",
		Match: []string{"holds data ferry did not write", "copied from another PVC"},
	},
	{
		See:   "\"a final transfer (backup …) is under way; a stage does not replace it\"",
		Fix:   "Run the stage after the final ends.",
		Match: []string{"a stage does not replace it"},
	},
	{
		See:   "\"transfer … was replaced by transfer …\"",
		Fix:   "A newer backup (or a hand-written request) took over the PVC before this one finished; the newer one carries on from where rsync got to.",
		Match: []string{"was replaced by"},
	},
	{
		See:   "Transfer attempts failing with \"connection refused/reset\"",
		Fix:   "The client retries with backoff, then a new client pod starts (3 at most). Check the endpoint (`status.endpoint` in the PVC's `ferry.dev/transfer-status`) is reachable from the source cluster's nodes.",
		Match: []string{"connection refused", "connection reset"},
	},
	{
		See: "Files on the target owned by unexpected UIDs (OpenShift)",
		Fix: "The target namespace existed before with another UID range (a `TargetUIDRangeDiffers` Event says so). Let ferry create the namespace, or give it the source's `openshift.io/sa.scc.uid-range`.",
	},
	{
		See: "`kubectl -n shop describe pvc data`",
		Fix: "Every phase of a transfer is an Event on the source PVC: TransferAccepted, TransferPreparing, TargetPVCCreated, Quiesced, TransferStarted, TransferAttemptFailed, TransferCompleted/TransferFailed, and with a verify pass TransferVerified/TransferVerifyFailed.",
	},
}

// Fix returns the fix for a failure message, "" when no row matches it.
func Fix(message string) string {
	for _, e := range Table {
		for _, m := range e.Match {
			if strings.Contains(message, m) {
				return e.Fix
			}
		}
	}
	return ""
}

// Markdown renders the table as the README shows it.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| You see | Why, and what to do |\n|---|---|\n")
	for _, e := range Table {
		b.WriteString("| " + e.See + " | " + e.Fix + " |\n")
	}
	return b.String()
}
