package sidecar

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/ferry-dev/ferry/internal/operation"
)

// Patch applies a JSON merge patch to the object a status is written on and refreshes the
// caller's copy from the API server's answer (so it sees a cancel or a newer request written
// meanwhile).
type Patch func(ctx context.Context, mergePatch []byte) error

// WriteStatus patches st into annotation key of obj, stamping Updated, unless only Updated
// would change: an operation that waits does not rewrite its object every poll.
func WriteStatus(ctx context.Context, clk clock.PassiveClock, obj metav1.Object, key string, st operation.Status, apply Patch) error {
	h := st.Head()
	cur := obj.GetAnnotations()[key]
	var old operation.Header
	if cur != "" && json.Unmarshal([]byte(cur), &old) == nil {
		updated := h.Updated
		h.Updated = old.Updated
		if operation.Encode(st) == cur {
			return nil
		}
		h.Updated = updated
	}
	h.Updated = operation.NewTime(clk.Now())
	value := operation.Encode(st)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	if err := apply(ctx, body); err != nil {
		return fmt.Errorf("writing annotation %s on %s/%s: %w", key, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}
