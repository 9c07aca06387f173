package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/dashboard/collect"
	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/keys"
)

// CancelRequest is what the page posts to /api/cancel.
type CancelRequest struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ID is the request the viewer saw: the sidecar cancels only the request with this ID, so a
	// click never stops a newer transfer that replaced it meanwhile.
	ID string `json:"id"`
}

// cancel sets the cancel annotation with the viewer's credentials. The page posts JSON: a
// cross-site form cannot, and a cross-site script would need a CORS preflight this server never
// answers.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AllowCancel {
		http.Error(w, "cancel is off: start the dashboard with --allow-cancel", http.StatusForbidden)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	var req CancelRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Namespace == "" || req.Name == "" || req.ID == "" {
		http.Error(w, "want {kind, namespace, name, id}", http.StatusBadRequest)
		return
	}
	var key string
	switch req.Kind {
	case view.KindPVC:
		key = keys.TransferCancel
	case view.KindImageStream:
		key = keys.ImageCopyCancel
	default:
		http.Error(w, "kind must be PVC or ImageStream", http.StatusBadRequest)
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: req.ID}}})
	var err error
	if req.Kind == view.KindPVC {
		_, err = s.kube.CoreV1().PersistentVolumeClaims(req.Namespace).Patch(r.Context(), req.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = s.dyn.Resource(collect.ImageStreams).Namespace(req.Namespace).Patch(r.Context(), req.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		// The API server decides with the viewer's rights; its answer is the reason.
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	s.may.forget()
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "cancel requested for %s %s/%s\n", req.Kind, req.Namespace, req.Name)
}

func httpStatus(err error) int {
	type status interface{ Status() metav1.Status }
	if s, ok := err.(status); ok && s.Status().Code != 0 {
		return int(s.Status().Code)
	}
	return http.StatusBadGateway
}

// accessCache remembers for a while whether the viewer may patch an item, so the page (rebuilt
// every 2 s) does not ask the API server each time.
type accessCache struct {
	kube kubernetes.Interface
	now  func() time.Time
	mu   sync.Mutex
	m    map[string]access
}

type access struct {
	allowed bool
	at      time.Time
}

const accessTTL = 30 * time.Second

func newAccessCache(kube kubernetes.Interface, now func() time.Time) *accessCache {
	return &accessCache{kube: kube, now: now, m: map[string]access{}}
}

func (c *accessCache) patch(ctx context.Context, kind, namespace, name string) bool {
	gvr := collect.PVCs
	if kind == view.KindImageStream {
		gvr = collect.ImageStreams
	}
	k := kind + "/" + namespace + "/" + name
	c.mu.Lock()
	a, ok := c.m[k]
	c.mu.Unlock()
	if ok && c.now().Sub(a.at) < accessTTL {
		return a.allowed
	}
	allowed := collect.May(ctx, c.kube, "patch", gvr, namespace, name)
	c.mu.Lock()
	c.m[k] = access{allowed: allowed, at: c.now()}
	c.mu.Unlock()
	return allowed
}

func (c *accessCache) forget() {
	c.mu.Lock()
	c.m = map[string]access{}
	c.mu.Unlock()
}
