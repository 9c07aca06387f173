package imagecopy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferry-dev/ferry/internal/keys"
)

// Request is what an ImageStream's annotations ask the sidecar to do: copy the stream's locally
// pushed images to the target registry, into the target stream's repository.
type Request struct {
	ID              string
	TargetNamespace string
	TargetName      string
	Backup          string
	Cancel          bool // ImageCopyCancel equals ID
}

// ParseRequest reads the request from an ImageStream's annotations. It returns (nil, nil) when
// the stream carries no request, and an error naming the stream and the bad key otherwise.
func ParseRequest(namespace, name string, ann map[string]string) (*Request, error) {
	id, ok := ann[keys.ImageCopyID]
	if !ok {
		return nil, nil
	}
	var errs []string
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("annotation %s=%q: %s", key, ann[key], fmt.Sprintf(format, a...)))
	}
	r := &Request{ID: strings.TrimSpace(id), TargetNamespace: namespace, TargetName: name, Backup: ann[keys.ImageCopyBackup]}
	if r.ID == "" {
		bad(keys.ImageCopyID, "must not be empty")
	} else if len(r.ID) > 253 {
		bad(keys.ImageCopyID, "longer than 253 characters")
	}
	if v, ok := ann[keys.ImageCopyTarget]; ok {
		ns, n, found := strings.Cut(v, "/")
		switch {
		case !found:
			bad(keys.ImageCopyTarget, "want namespace/name")
		case len(validation.IsDNS1123Label(ns)) > 0:
			bad(keys.ImageCopyTarget, "namespace %q is not a valid namespace name", ns)
		case len(validation.IsDNS1123Subdomain(n)) > 0:
			bad(keys.ImageCopyTarget, "name %q is not a valid image stream name", n)
		default:
			r.TargetNamespace, r.TargetName = ns, n
		}
	}
	r.Cancel = r.ID != "" && ann[keys.ImageCopyCancel] == r.ID
	if len(errs) > 0 {
		return nil, fmt.Errorf("ImageStream %s/%s has a malformed image copy request: %s", namespace, name, strings.Join(errs, "; "))
	}
	return r, nil
}

// Annotations renders the request as the annotations ParseRequest reads (without Cancel).
func (r *Request) Annotations() map[string]string {
	a := map[string]string{
		keys.ImageCopyID:     r.ID,
		keys.ImageCopyTarget: r.TargetNamespace + "/" + r.TargetName,
	}
	if r.Backup != "" {
		a[keys.ImageCopyBackup] = r.Backup
	}
	return a
}
