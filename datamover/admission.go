package datamover

import "sync"

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
