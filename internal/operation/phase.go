package operation

// Phase is where an operation is. Transfers go Pending → Preparing → (Quiescing →)
// Transferring; image copies Pending → Copying. Both end in one of the terminal phases.
type Phase string

const (
	// PhasePending: accepted; waiting for a concurrency slot or for a retry.
	PhasePending Phase = "Pending"
	// PhasePreparing: target namespace/PVC, certificates, server pod and endpoint being set up.
	PhasePreparing Phase = "Preparing"
	// PhaseQuiescing: final transfer; the workloads mounting the PVC are being scaled down.
	PhaseQuiescing Phase = "Quiescing"
	// PhaseTransferring: rsync is running.
	PhaseTransferring Phase = "Transferring"
	// PhaseCopying: images are being copied.
	PhaseCopying Phase = "Copying"

	PhaseCompleted Phase = "Completed"
	// PhaseRefused: the sidecar did not act on the request (not signed by Velero's plugins or an
	// admin, or it would overwrite data ferry did not write); nothing was created.
	PhaseRefused Phase = "Refused"
	// PhaseFailed: the operation ended without doing all it was asked (the status says why).
	PhaseFailed    Phase = "Failed"
	PhaseCancelled Phase = "Cancelled"
)

// Terminal reports whether nothing more will happen for the request.
func (p Phase) Terminal() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseCancelled || p == PhaseRefused
}
