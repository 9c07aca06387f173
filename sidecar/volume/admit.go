package volume

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
)

// admission bounds how many transfers run at once (ferry-config concurrency). A transfer holds
// a slot from Preparing until it ends. The count is rebuilt from the PVCs' status annotations,
// so a restarted sidecar honours the slots its predecessor gave out; the in-memory set covers
// admissions whose status write the cache has not shown yet.
type admission struct {
	mu       sync.Mutex
	admitted map[string]bool
}

func newAdmission() *admission { return &admission{admitted: map[string]bool{}} }

// admit takes a slot for key if fewer than limit are in use. active lists the keys the cluster
// shows as running. It returns whether key may run and how many slots are in use.
func (a *admission) admit(key string, limit int, active func() (map[string]bool, error)) (bool, int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	running, err := active()
	if err != nil {
		return false, 0, err
	}
	for k := range a.admitted {
		running[k] = true
	}
	if running[key] {
		a.admitted[key] = true
		return true, len(running), nil
	}
	if len(running) >= limit {
		return false, len(running), nil
	}
	a.admitted[key] = true
	return true, len(running) + 1, nil
}

// release gives key's slot back.
func (a *admission) release(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.admitted, key)
}

// admit waits for a concurrency slot, then starts preparing.
func (t *job) admit(ctx context.Context) (ctrl.Result, error) {
	key := t.pvc.Namespace + "/" + t.pvc.Name
	ok, inUse, err := t.r.admission.admit(key, t.cfg.Concurrency, func() (map[string]bool, error) { return t.r.activeTransfers(ctx) })
	if err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return t.wait(ctx, fmt.Sprintf("waiting for a transfer slot (%d of %d in use)", inUse, t.cfg.Concurrency))
	}
	return ctrl.Result{}, t.enter(ctx, operation.PhasePreparing, "TransferPreparing", "preparing the target "+t.st.Target)
}

// activeTransfers lists the PVCs whose transfer holds a slot, from the cache.
func (r *Reconciler) activeTransfers(ctx context.Context) (map[string]bool, error) {
	var list corev1.PersistentVolumeClaimList
	if err := r.Cache.List(ctx, &list); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		st, _ := operation.ParseTransferStatus(p.Annotations)
		if st == nil || st.Phase.Terminal() || st.Phase == operation.PhasePending {
			continue
		}
		if p.Annotations[keys.TransferID] == st.ID {
			out[p.Namespace+"/"+p.Name] = true
		}
	}
	transfersActive.Set(float64(len(out)))
	return out, nil
}
