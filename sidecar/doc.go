// Package sidecar is what ferry-datamover's controller is made of besides its two reconcilers:
// the manager (clients, the target-cluster cache and the Lease built once), and the rules both
// reconcilers follow — which errors are worth a retry, how long a phase may keep retrying, and
// how a status annotation is written. The reconcilers are its subpackages: volume (PVC
// transfers) and images (image-stream copies).
package sidecar
