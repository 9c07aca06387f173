package operation

import (
	"fmt"

	"github.com/ferry-dev/ferry/internal/keys"
)

// ImageCopyKeys are the annotations of an image copy request on a live source ImageStream.
var ImageCopyKeys = Keys{
	Kind: "ImageStream", Noun: "image copy",
	ID: keys.ImageCopyID, Target: keys.ImageCopyTarget, Backup: keys.ImageCopyBackup,
	Cancel: keys.ImageCopyCancel, Status: keys.ImageCopyStatus, Overwrite: keys.ImageCopyOverwrite, Signature: keys.ImageCopySignature,
}

// ImageCopyRequest asks the sidecar to copy a stream's locally pushed images to the target
// registry, into the target stream's repository.
type ImageCopyRequest struct {
	Request
}

// ParseImageCopyRequest reads the request from an ImageStream's annotations. It returns
// (nil, nil) when the stream carries no request, and an error naming every bad key otherwise.
func ParseImageCopyRequest(namespace, name string, ann map[string]string) (*ImageCopyRequest, error) {
	base, p := ImageCopyKeys.parse(namespace, name, ann)
	if base == nil {
		return nil, nil
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return &ImageCopyRequest{Request: *base}, nil
}

// Annotations renders the request as the annotations ParseImageCopyRequest reads (without
// Cancel).
func (r *ImageCopyRequest) Annotations() map[string]string {
	return ImageCopyKeys.annotations(&r.Request)
}

// Bounds that keep the image copy status small: it travels inside every gRPC call Velero makes
// for the image stream.
const (
	maxListedErrors = 10
	maxErrorLength  = 300
)

// ImageCopyStatus is the sidecar's report on an image stream (annotation keys.ImageCopyStatus).
type ImageCopyStatus struct {
	Header
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
	FailedImages int          `json:"failedImages,omitempty"`
	Errors       []ImageError `json:"errors,omitempty"`
}

// ImageError is why one image of a stream was not copied.
type ImageError struct {
	Tag   string `json:"tag"`
	Image string `json:"image,omitempty"`
	Error string `json:"error"`
}

// AddError records a failed image, keeping the list and each message short. A long message
// keeps its start (what was copied where) and its end (the cause, and what to check).
func (s *ImageCopyStatus) AddError(tag, image, msg string) {
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
func (s *ImageCopyStatus) ErrorSummary() string {
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

// ParseImageCopyStatus reads a stream's status annotation; (nil, nil) when there is none.
func ParseImageCopyStatus(ann map[string]string) (*ImageCopyStatus, error) {
	return decode[ImageCopyStatus](ann, keys.ImageCopyStatus, "a ferry image copy status")
}
