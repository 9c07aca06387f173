package imagecopy

import (
	"fmt"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/transfer"
)

// Phase is where an image stream's copy is.
type Phase string

const (
	// PhasePending: accepted; the sidecar is resolving registries or waiting to retry.
	PhasePending Phase = "Pending"
	// PhaseCopying: images are being copied.
	PhaseCopying   Phase = "Copying"
	PhaseCompleted Phase = "Completed"
	// PhaseFailed: the copy ended and at least one image could not be copied (the others were).
	PhaseFailed    Phase = "Failed"
	PhaseCancelled Phase = "Cancelled"
)

// Terminal reports whether nothing more will happen for this ID.
func (p Phase) Terminal() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseCancelled
}

// Bounds that keep the status annotation small: it travels inside every gRPC call Velero makes
// for the image stream.
const (
	maxListedErrors = 10
	maxErrorLength  = 300
)

// Status is the sidecar's report on an image stream (annotation keys.ImageCopyStatus).
type Status struct {
	ID      string `json:"id"`
	Phase   Phase  `json:"phase"`
	Message string `json:"message,omitempty"`
	// Target is the repository the images go to: registry/namespace/name.
	Target string `json:"target,omitempty"`
	// Images counts what is copied: one per locally pushed tag plus one per other history digest.
	Images     int `json:"images,omitempty"`
	ImagesDone int `json:"imagesDone,omitempty"`
	// BlobsSent and BlobsSkipped count layer and config blobs uploaded to the target and blobs
	// the target already had; a repeated copy of unchanged images sends none.
	BlobsSent    int   `json:"blobsSent"`
	BlobsSkipped int   `json:"blobsSkipped"`
	BytesSent    int64 `json:"bytesSent,omitempty"`
	// Retries counts attempts repeated after transient registry errors.
	Retries int `json:"retries,omitempty"`
	// FailedImages counts images that could not be copied; Errors lists the first few.
	FailedImages int            `json:"failedImages,omitempty"`
	Errors       []ImageError   `json:"errors,omitempty"`
	Started      *transfer.Time `json:"started,omitempty"`
	Updated      *transfer.Time `json:"updated,omitempty"`
	Completed    *transfer.Time `json:"completed,omitempty"`
}

// ImageError is why one image of a stream was not copied.
type ImageError struct {
	Tag   string `json:"tag"`
	Image string `json:"image,omitempty"`
	Error string `json:"error"`
}

// AddError records a failed image, keeping the list and each message short. A long message
// keeps its start (what was copied where) and its end (the cause, and what to check).
func (s *Status) AddError(tag, image, msg string) {
	s.FailedImages++
	if len(s.Errors) >= maxListedErrors {
		return
	}
	if len(msg) > maxErrorLength {
		head := maxErrorLength / 3
		msg = msg[:head] + " … " + msg[len(msg)-(maxErrorLength-head):]
	}
	s.Errors = append(s.Errors, ImageError{Tag: tag, Image: image, Error: msg})
}

// ErrorSummary joins the recorded errors into one line for Velero's operation error.
func (s *Status) ErrorSummary() string {
	out := fmt.Sprintf("%d of %d images not copied", s.FailedImages, s.Images)
	for _, e := range s.Errors {
		out += fmt.Sprintf("; tag %s", e.Tag)
		if e.Image != "" {
			out += " (" + e.Image + ")"
		}
		out += ": " + e.Error
	}
	if more := s.FailedImages - len(s.Errors); more > 0 {
		out += fmt.Sprintf("; and %d more", more)
	}
	return out
}

// ParseStatus reads the status annotation; (nil, nil) when there is none.
func ParseStatus(ann map[string]string) (*Status, error) {
	return transfer.DecodeAnnotation[Status](ann, keys.ImageCopyStatus, "a ferry image copy status")
}

// Encode renders the status for the annotation.
func (s *Status) Encode() string { return transfer.EncodeJSON(s) }
