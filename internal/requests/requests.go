// Package requests writes signed requests on live objects: the one way a transfer or an image
// copy is asked for, used by ferry's backup actions and by `ferry-datamover request`.
package requests

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
)

// Patch applies a JSON merge patch to the live object the request goes on.
type Patch func(ctx context.Context, body []byte) error

// Write signs the request in ann (its annotations, as the request's Annotations renders them)
// for the object namespace/name with uid, with the key in Velero's namespace of clients, and
// patches it on. Keys of an older request that this one does not set are removed (the signature
// covers exactly what is there), and so is a stale cancel.
func Write(ctx context.Context, clients *kube.Clients, k operation.Keys, uid types.UID, namespace, name string, ann map[string]string, now time.Time, patch Patch) error {
	key, err := kube.RequestKey(ctx, clients)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", k.Kind, namespace, name, err)
	}
	sig, err := k.Sign(key, uid, namespace, name, ann, now)
	if err != nil {
		return fmt.Errorf("%s %s/%s: signing the %s request: %w", k.Kind, namespace, name, k.Noun, err)
	}
	body := map[string]any{k.Cancel: nil, k.Signature: sig}
	for _, key := range k.Signed() {
		body[key] = nil
	}
	for key, v := range ann {
		body[key] = v
	}
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": body}})
	if err != nil {
		return err
	}
	if err := patch(ctx, b); err != nil {
		return fmt.Errorf("%s %s/%s: writing the %s request: %w", k.Kind, namespace, name, k.Noun, err)
	}
	return nil
}

// FinalUnderWay refuses a stage while a final transfer of the PVC is under way: the final wins
// (a stage replacing it would cut its last pass short). live is the PVC as it is now.
func FinalUnderWay(live *corev1.PersistentVolumeClaim, req *operation.TransferRequest) error {
	if req.Type != operation.Stage {
		return nil
	}
	cur, _ := operation.ParseTransferRequest(live.Namespace, live.Name, live.Annotations)
	st, _ := operation.ParseTransferStatus(live.Annotations)
	if cur != nil && cur.Type == operation.Final && cur.ID != req.ID && (st == nil || st.ID != cur.ID || !st.Phase.Terminal()) {
		by := cur.Backup
		if by == "" {
			by = "request " + cur.ID
		} else {
			by = "backup " + by
		}
		return fmt.Errorf("PVC %s/%s: a final transfer (%s) is under way; a stage does not replace it, run it after the final completes", live.Namespace, live.Name, by)
	}
	return nil
}

// PVCPatch patches a PVC.
func PVCPatch(clients *kube.Clients, namespace, name string) Patch {
	return func(ctx context.Context, body []byte) error {
		_, err := clients.Kube.CoreV1().PersistentVolumeClaims(namespace).Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
}
