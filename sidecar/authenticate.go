package sidecar

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/operation"
)

// Authenticate checks a request's signature (operation.Keys.Verify) with the current key. A
// request that fails is refused: refusal is returned as a non-nil reason. A request seen for
// the first time (fresh) must also be younger than operation.MaxRequestAge. An error (the key
// cannot be read) is for a retry.
func (e *Env) Authenticate(ctx context.Context, k operation.Keys, obj metav1.Object, fresh bool) (refusal error, err error) {
	key, err := e.RequestKey(ctx)
	if err != nil {
		return nil, err
	}
	issued, verr := k.Verify(key, obj.GetUID(), obj.GetNamespace(), obj.GetName(), obj.GetAnnotations())
	if verr != nil {
		return fmt.Errorf("%v; ferry acts only on %s requests from Velero's plugins or an admin's `ferry-datamover request`", verr, k.Noun), nil
	}
	if age := e.Clock.Now().Sub(issued); fresh && age > operation.MaxRequestAge {
		return fmt.Errorf("the request was signed %s ago, longer than %s: start a new backup", age.Round(time.Minute), operation.MaxRequestAge), nil
	}
	return nil, nil
}
