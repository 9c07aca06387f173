// Package operation is the contract between ferry's plugins and its data-mover sidecar. A
// backup action writes a request as annotations on a live object (a PVC to transfer, an
// ImageStream to copy) and hands Velero an operation ID; the sidecar acts on the request and
// writes its status back into one annotation of the same object, which the action's Progress()
// reads. Neither side imports the other; both import this package.
//
// Both kinds of operation share one shape: a request keyed by a set of annotation keys (Keys),
// phases with the same terminal states, and a status that starts with the same Header.
package operation

import (
	"fmt"
	"strings"
)

// SidecarLease is the coordination.k8s.io Lease in Velero's namespace that a running
// ferry-datamover holds (leader election). Its absence means no sidecar was ever installed.
const SidecarLease = "ferry-datamover"

// ID joins an object and a request ID into a Velero operation ID.
func ID(namespace, name, requestID string) string {
	return namespace + "/" + name + "/" + requestID
}

// ParseID splits an operation ID made by ID.
func ParseID(op string) (namespace, name, requestID string, err error) {
	parts := strings.SplitN(op, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("operation ID %q is not namespace/name/request-id", op)
	}
	return parts[0], parts[1], parts[2], nil
}
