package operation

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Keys are the annotations one kind of request is written in. Parsing and rendering are driven
// by them, so a transfer and an image copy read the same way.
type Keys struct {
	// Kind and Noun name the object and the operation in messages ("PVC", "transfer").
	Kind, Noun string
	// ID starts a request; a new value starts a new operation.
	ID string
	// Target is the target object, "namespace/name" (default: the same namespace and name).
	Target string
	// Backup names the Backup that asked, for people reading the object.
	Backup string
	// Cancel set to the current ID cancels the operation.
	Cancel string
	// Status is the sidecar's report (JSON).
	Status string
	// Overwrite ("true") lets the operation fill a target that holds data ferry did not write.
	Overwrite string
	// Signature authenticates the request (sign.go).
	Signature string
	// Extra are the kind's own request keys; the signature covers them with the ones above.
	Extra []string
}

// Signed lists every key whose value the signature covers: all that shape what is done.
func (k Keys) Signed() []string {
	return append([]string{k.ID, k.Target, k.Backup, k.Overwrite}, k.Extra...)
}

// Request is what every request asks, whatever its kind.
type Request struct {
	ID              string
	TargetNamespace string
	TargetName      string
	Backup          string
	// Overwrite: the target may hold data ferry did not write (an admin's choice).
	Overwrite bool
	// Cancel: the Cancel key names this ID.
	Cancel bool
}

// Target is the target object as "namespace/name".
func (r *Request) Target() string { return r.TargetNamespace + "/" + r.TargetName }

// requestParser reads one request's annotations, collecting every problem so a message names
// them all at once.
type requestParser struct {
	keys      Keys
	namespace string
	name      string
	ann       map[string]string
	errs      []string
}

// bad records a problem with the annotation key.
func (p *requestParser) bad(key, format string, a ...any) {
	p.errs = append(p.errs, fmt.Sprintf("annotation %s=%q: %s", key, p.ann[key], fmt.Sprintf(format, a...)))
}

// err is nil when nothing was bad.
func (p *requestParser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s/%s has a malformed %s request: %s", p.keys.Kind, p.namespace, p.name, p.keys.Noun, strings.Join(p.errs, "; "))
}

// parse reads the common part of the request on object namespace/name. It returns a nil
// parser when the object carries no request.
func (k Keys) parse(namespace, name string, ann map[string]string) (*Request, *requestParser) {
	id, ok := ann[k.ID]
	if !ok {
		return nil, nil
	}
	p := &requestParser{keys: k, namespace: namespace, name: name, ann: ann}
	r := &Request{ID: strings.TrimSpace(id), TargetNamespace: namespace, TargetName: name, Backup: ann[k.Backup]}
	if r.ID == "" {
		p.bad(k.ID, "must not be empty")
	} else if len(r.ID) > 253 {
		p.bad(k.ID, "longer than 253 characters")
	}
	if v, ok := ann[k.Target]; ok {
		ns, n, found := strings.Cut(v, "/")
		switch {
		case !found:
			p.bad(k.Target, "want namespace/name")
		case len(validation.IsDNS1123Label(ns)) > 0:
			p.bad(k.Target, "namespace %q is not a valid namespace name", ns)
		case len(validation.IsDNS1123Subdomain(n)) > 0:
			p.bad(k.Target, "name %q is not a valid %s name", n, k.Kind)
		default:
			r.TargetNamespace, r.TargetName = ns, n
		}
	}
	if v, ok := ann[k.Overwrite]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.bad(k.Overwrite, "want true or false")
		}
		r.Overwrite = b
	}
	r.Cancel = r.ID != "" && ann[k.Cancel] == r.ID
	return r, p
}

// annotations renders the common part of a request (without Cancel).
func (k Keys) annotations(r *Request) map[string]string {
	a := map[string]string{k.ID: r.ID, k.Target: r.Target()}
	if r.Backup != "" {
		a[k.Backup] = r.Backup
	}
	if r.Overwrite {
		a[k.Overwrite] = "true"
	}
	return a
}
