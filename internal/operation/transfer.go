package operation

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// TransferKeys are the annotations of a transfer request on a live source PVC.
var TransferKeys = Keys{
	Kind: "PVC", Noun: "transfer",
	ID: keys.TransferID, Target: keys.TransferTarget, Backup: keys.TransferBackup,
	Cancel: keys.TransferCancel, Status: keys.TransferStatus, Overwrite: keys.TransferOverwrite, Signature: keys.TransferSignature,
	Extra: []string{keys.TransferType, keys.TransferStorageClass, keys.TransferAccessModes, keys.TransferVerify, keys.TransferMove, keys.TransferQuiesceScope},
}

// TransferType is the kind of pass: stage (app running) or final (app quiesced first).
type TransferType string

const (
	Stage TransferType = keys.MigrationStage
	Final TransferType = keys.MigrationFinal
)

// TransferRequest asks the sidecar to copy a PVC into a target PVC. Unset choices (nil) are
// filled by Resolve, so a request written by hand gets what a backup would have asked.
type TransferRequest struct {
	Request
	Type         TransferType
	StorageClass *string
	AccessModes  []corev1.PersistentVolumeAccessMode
	Verify       *bool
	// Move: the PV moves with the backup (shared storage), so a final copies nothing; it only
	// quiesces what uses the PVC, so the source app stops writing before the target's starts.
	Move bool
	// QuiesceNamespace (finals only): quiesce every workload of the PVC's namespace, not only
	// those that mount the PVC.
	QuiesceNamespace bool
}

// ParseTransferRequest reads the request from a PVC's annotations. It returns (nil, nil) when
// the PVC carries no request, and an error naming every bad key of a malformed one.
func ParseTransferRequest(namespace, name string, ann map[string]string) (*TransferRequest, error) {
	base, p := TransferKeys.parse(namespace, name, ann)
	if base == nil {
		return nil, nil
	}
	r := &TransferRequest{Request: *base, Type: Stage}
	if v, ok := ann[keys.TransferType]; ok {
		switch TransferType(v) {
		case Stage, Final:
			r.Type = TransferType(v)
		default:
			p.bad(keys.TransferType, "want %q or %q", Stage, Final)
		}
	}
	if v, ok := ann[keys.TransferStorageClass]; ok {
		if v != "" && len(validation.IsDNS1123Subdomain(v)) > 0 {
			p.bad(keys.TransferStorageClass, "not a valid storage class name")
		} else {
			r.StorageClass = &v
		}
	}
	if v, ok := ann[keys.TransferAccessModes]; ok {
		modes, err := config.ParseAccessModes(v)
		if err != nil {
			p.bad(keys.TransferAccessModes, "%v", err)
		}
		r.AccessModes = modes
	}
	if v, ok := ann[keys.TransferVerify]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.bad(keys.TransferVerify, "want true or false")
		}
		r.Verify = &b
	}
	if v, ok := ann[keys.TransferMove]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.bad(keys.TransferMove, "want true or false")
		}
		r.Move = b
	}
	if v, ok := ann[keys.TransferQuiesceScope]; ok {
		switch v {
		case keys.QuiesceScopeVolumes:
		case keys.QuiesceScopeNamespace:
			r.QuiesceNamespace = true
		default:
			p.bad(keys.TransferQuiesceScope, "want %q or %q", keys.QuiesceScopeVolumes, keys.QuiesceScopeNamespace)
		}
	}
	if r.QuiesceNamespace && r.Type != Final {
		p.bad(keys.TransferQuiesceScope, "only a final quiesces")
	}
	if r.Move && r.Type != Final {
		p.bad(keys.TransferMove, "only a final moves a volume (a stage of a moved volume has nothing to do)")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// Annotations renders the request as the annotations ParseTransferRequest reads (without
// Cancel).
func (r *TransferRequest) Annotations() map[string]string {
	a := TransferKeys.annotations(&r.Request)
	a[keys.TransferType] = string(r.Type)
	if r.Verify != nil {
		a[keys.TransferVerify] = strconv.FormatBool(*r.Verify)
	}
	if r.Move {
		a[keys.TransferMove] = "true"
	}
	if r.QuiesceNamespace {
		a[keys.TransferQuiesceScope] = keys.QuiesceScopeNamespace
	}
	if r.StorageClass != nil {
		a[keys.TransferStorageClass] = *r.StorageClass
	}
	if len(r.AccessModes) > 0 {
		a[keys.TransferAccessModes] = config.FormatAccessModes(r.AccessModes)
	}
	return a
}

// TransferStatus is the sidecar's report on a PVC (annotation keys.TransferStatus). It stays
// small: the annotation travels inside every gRPC call Velero makes for the PVC.
type TransferStatus struct {
	Header
	// Type is the request's: stage or final.
	Type TransferType `json:"type,omitempty"`
	// Target is the resolved target PVC, "namespace/name".
	Target string `json:"target,omitempty"`
	// Endpoint is the address the client connects to.
	Endpoint   string `json:"endpoint,omitempty"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	// BytesSent is what went over the wire (after rsync's deltas), for "only the delta moved".
	BytesSent int64   `json:"bytesSent,omitempty"`
	Files     int64   `json:"files,omitempty"`
	FilesSent int64   `json:"filesSent,omitempty"`
	Percent   float64 `json:"percent,omitempty"`
	RateBPS   int64   `json:"rateBytesPerSecond,omitempty"`
	Attempts  int     `json:"attempts,omitempty"`
	Warnings  int     `json:"warnings,omitempty"`
	// Quiesced lists the workloads a final transfer scaled down, "Kind/name" (for rollback).
	Quiesced []string `json:"quiesced,omitempty"`
	// Progressed is when the copy last moved (bytes or files): a stall counts from it.
	Progressed *Time `json:"progressed,omitempty"`
	// Verifying is the share (percent) of the verify pass done, while it runs.
	Verifying float64 `json:"verifying,omitempty"`
	// Verified is the verify pass's result: of the completed copy, or the differences that
	// failed an attempt.
	Verified *TransferVerification `json:"verified,omitempty"`
	// Last is the most recent transfer of this PVC that completed (this one, once it has). It
	// outlives the request it came from, so "when did a stage last succeed, and what did it
	// move" stays answerable while the next one runs or after one fails.
	Last *LastTransfer `json:"last,omitempty"`
}

// ETA is the time the copy still needs at its current rate, 0 when it cannot be told (not
// copying, no rate or no total yet).
func (st *TransferStatus) ETA() time.Duration {
	left := st.BytesTotal - st.BytesDone
	if st.Phase != PhaseTransferring || left <= 0 || st.RateBPS <= 0 {
		return 0
	}
	return time.Duration((left+st.RateBPS-1)/st.RateBPS) * time.Second
}

// MaxVerifiedPaths is how many differing paths TransferVerification names.
const MaxVerifiedPaths = 5

// TransferVerification sums up a verify pass: after the copy, every file compared by content
// on both sides (ferry.dev/transfer-verify).
type TransferVerification struct {
	// Files were compared; Bytes is their size, read in full on each side.
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
	// Mismatches counts the entries that differ; First names up to MaxVerifiedPaths of them.
	Mismatches int64    `json:"mismatches"`
	First      []string `json:"first,omitempty"`
	// Repaired counts differences an earlier attempt found, which the next copy (by
	// content) removed.
	Repaired int64 `json:"repaired,omitempty"`
}

// LastTransfer sums up a completed transfer.
type LastTransfer struct {
	ID         string       `json:"id"`
	Type       TransferType `json:"type,omitempty"`
	Target     string       `json:"target,omitempty"`
	Completed  *Time        `json:"completed,omitempty"`
	BytesSent  int64        `json:"bytesSent,omitempty"`
	BytesTotal int64        `json:"bytesTotal,omitempty"`
	FilesSent  int64        `json:"filesSent,omitempty"`
}

// Succeeded returns the summary of a completed status, to become the status's Last.
func (s *TransferStatus) Succeeded() *LastTransfer {
	return &LastTransfer{ID: s.ID, Type: s.Type, Target: s.Target, Completed: s.Completed, BytesSent: s.BytesSent, BytesTotal: s.BytesTotal, FilesSent: s.FilesSent}
}

// LastOf returns what a status that replaces st carries over: st's Last (nil-safe).
func LastOf(st *TransferStatus) *LastTransfer {
	if st == nil {
		return nil
	}
	return st.Last
}

// ParseTransferStatus reads a PVC's status annotation; (nil, nil) when there is none.
func ParseTransferStatus(ann map[string]string) (*TransferStatus, error) {
	return decode[TransferStatus](ann, keys.TransferStatus, "a ferry transfer status")
}
