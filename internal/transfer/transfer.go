// Package transfer is the contract between ferry's plugins and its data-mover sidecar: a
// transfer request written as annotations on a live source PVC, and the status the sidecar writes
// back into one annotation. Neither side imports the other; both import this package.
package transfer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// SidecarLease is the coordination.k8s.io Lease in Velero's namespace that a running
// ferry-datamover holds (leader election). Its absence means no sidecar was ever installed.
const SidecarLease = "ferry-datamover"

// Type is the kind of pass: stage (app running) or final (app quiesced first).
type Type string

const (
	Stage Type = keys.MigrationStage
	Final Type = keys.MigrationFinal
)

// Request is what a PVC's annotations ask for. Empty optional fields mean "decide from the
// config map" (for hand-written requests).
type Request struct {
	ID              string
	Type            Type
	TargetNamespace string
	TargetName      string
	StorageClass    *string // nil: map the source's class through the config
	AccessModes     []corev1.PersistentVolumeAccessMode
	Verify          bool
	Backup          string
	Cancel          bool // TransferCancel equals ID
}

// ParseRequest reads the request from a PVC's annotations. It returns (nil, nil) when the PVC
// carries no request, and an error naming the bad key for a malformed one.
func ParseRequest(pvcNamespace, pvcName string, ann map[string]string) (*Request, error) {
	id, ok := ann[keys.TransferID]
	if !ok {
		return nil, nil
	}
	var errs []string
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("annotation %s=%q: %s", key, ann[key], fmt.Sprintf(format, a...)))
	}
	r := &Request{ID: strings.TrimSpace(id), Type: Stage, TargetNamespace: pvcNamespace, TargetName: pvcName, Backup: ann[keys.TransferBackup]}
	if r.ID == "" {
		bad(keys.TransferID, "must not be empty")
	} else if len(r.ID) > 253 {
		bad(keys.TransferID, "longer than 253 characters")
	}
	if v, ok := ann[keys.TransferType]; ok {
		switch Type(v) {
		case Stage, Final:
			r.Type = Type(v)
		default:
			bad(keys.TransferType, "want %q or %q", Stage, Final)
		}
	}
	if v, ok := ann[keys.TransferTarget]; ok {
		ns, name, found := strings.Cut(v, "/")
		switch {
		case !found:
			bad(keys.TransferTarget, "want namespace/name")
		case len(validation.IsDNS1123Label(ns)) > 0:
			bad(keys.TransferTarget, "namespace %q is not a valid namespace name", ns)
		case len(validation.IsDNS1123Subdomain(name)) > 0:
			bad(keys.TransferTarget, "name %q is not a valid PVC name", name)
		default:
			r.TargetNamespace, r.TargetName = ns, name
		}
	}
	if v, ok := ann[keys.TransferStorageClass]; ok {
		if v != "" && len(validation.IsDNS1123Subdomain(v)) > 0 {
			bad(keys.TransferStorageClass, "not a valid storage class name")
		} else {
			r.StorageClass = &v
		}
	}
	if v, ok := ann[keys.TransferAccessModes]; ok {
		modes, err := config.ParseAccessModes(v)
		if err != nil {
			bad(keys.TransferAccessModes, "%v", err)
		}
		r.AccessModes = modes
	}
	if v, ok := ann[keys.TransferVerify]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(keys.TransferVerify, "want true or false")
		}
		r.Verify = b
	}
	r.Cancel = r.ID != "" && ann[keys.TransferCancel] == r.ID
	if len(errs) > 0 {
		return nil, fmt.Errorf("PVC %s/%s has a malformed transfer request: %s", pvcNamespace, pvcName, strings.Join(errs, "; "))
	}
	return r, nil
}

// Annotations renders the request as the annotations ParseRequest reads.
func (r *Request) Annotations() map[string]string {
	a := map[string]string{
		keys.TransferID:     r.ID,
		keys.TransferType:   string(r.Type),
		keys.TransferTarget: r.TargetNamespace + "/" + r.TargetName,
		keys.TransferVerify: strconv.FormatBool(r.Verify),
	}
	if r.StorageClass != nil {
		a[keys.TransferStorageClass] = *r.StorageClass
	}
	if len(r.AccessModes) > 0 {
		a[keys.TransferAccessModes] = config.FormatAccessModes(r.AccessModes)
	}
	if r.Backup != "" {
		a[keys.TransferBackup] = r.Backup
	}
	return a
}

// Phase is where a transfer is.
type Phase string

const (
	// PhasePending: accepted, waiting for a concurrency slot.
	PhasePending Phase = "Pending"
	// PhasePreparing: target namespace/PVC, certificates, server pod and endpoint being set up.
	PhasePreparing Phase = "Preparing"
	// PhaseQuiescing: final pass; workloads mounting the PVC are being scaled down.
	PhaseQuiescing Phase = "Quiescing"
	// PhaseTransferring: rsync is running.
	PhaseTransferring Phase = "Transferring"
	// PhaseCleaningUp: data is across (or the transfer failed); transfer objects being deleted.
	PhaseCleaningUp Phase = "CleaningUp"
	PhaseCompleted  Phase = "Completed"
	PhaseFailed     Phase = "Failed"
	PhaseCancelled  Phase = "Cancelled"
)

// Terminal reports whether nothing more will happen for this ID.
func (p Phase) Terminal() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseCancelled
}

// Status is the sidecar's report on a PVC (annotation keys.TransferStatus). It stays small: the
// annotation travels inside every gRPC call Velero makes for the PVC.
type Status struct {
	ID      string `json:"id"`
	Phase   Phase  `json:"phase"`
	Message string `json:"message,omitempty"`
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
	Started   *Time   `json:"started,omitempty"`
	Updated   *Time   `json:"updated,omitempty"`
	Completed *Time   `json:"completed,omitempty"`
	// Since is when the current phase began; phase timeouts count from it, so they survive a
	// restart of the sidecar.
	Since *Time `json:"since,omitempty"`
	// Quiesced lists the workloads a final transfer scaled down, "Kind/name" (for rollback).
	Quiesced []string `json:"quiesced,omitempty"`
}

// Time is an RFC 3339 timestamp in JSON.
type Time struct{ time.Time }

// NewTime returns t truncated to seconds.
func NewTime(t time.Time) *Time { return &Time{t.UTC().Truncate(time.Second)} }

func (t Time) MarshalJSON() ([]byte, error) { return json.Marshal(t.UTC().Format(time.RFC3339)) }

func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	t.Time = p
	return nil
}

// ParseStatus reads the status annotation; (nil, nil) when there is none.
func ParseStatus(ann map[string]string) (*Status, error) {
	return DecodeAnnotation[Status](ann, keys.TransferStatus, "a ferry transfer status")
}

// Encode renders the status for the annotation.
func (s *Status) Encode() string { return EncodeJSON(s) }

// DecodeAnnotation reads a JSON report kept in annotation key (a status the sidecar writes);
// (nil, nil) when there is none. what names the report in the error.
func DecodeAnnotation[T any](ann map[string]string, key, what string) (*T, error) {
	v, ok := ann[key]
	if !ok || v == "" {
		return nil, nil
	}
	var out T
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("annotation %s is not %s: %v", key, what, err)
	}
	return &out, nil
}

// EncodeJSON renders a report made of plain fields for an annotation.
func EncodeJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain fields: cannot fail.
		panic(err)
	}
	return string(b)
}

// OperationID joins a PVC and a transfer ID into a Velero operation ID.
func OperationID(namespace, name, id string) string {
	return namespace + "/" + name + "/" + id
}

// ParseOperationID splits an OperationID.
func ParseOperationID(op string) (namespace, name, id string, err error) {
	parts := strings.SplitN(op, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("operation ID %q is not namespace/pvc/transfer-id", op)
	}
	return parts[0], parts[1], parts[2], nil
}
