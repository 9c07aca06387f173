package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// fakeSource serves a snapshot the test may change (set) while the server runs.
type fakeSource struct {
	mu      sync.Mutex
	in      view.Input
	changed chan struct{}
}

func (f *fakeSource) Snapshot(now time.Time) view.Input {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.in
	in.PVCs = slices.Clone(in.PVCs)
	in.Now = now
	return in
}

func (f *fakeSource) Changed() <-chan struct{} { return f.changed }

// setPVC replaces PVC i and says so.
func (f *fakeSource) setPVC(i int, p corev1.PersistentVolumeClaim) {
	f.mu.Lock()
	f.in.PVCs[i] = p
	f.mu.Unlock()
	f.changed <- struct{}{}
}

// transferring builds a PVC with a running transfer of backup s1.
func transferring(ns, name string, percent float64) corev1.PersistentVolumeClaim {
	st := &operation.TransferStatus{Header: operation.Header{ID: "uid-s1", Phase: operation.PhaseTransferring}, Type: operation.Stage, Percent: percent, BytesTotal: 100, BytesDone: int64(percent)}
	return corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{
		keys.TransferID: "uid-s1", keys.TransferBackup: "s1", keys.TransferStatus: operation.Encode(st),
	}}}
}

// viewer is a fake API server for the viewer: may patch PVCs in the namespaces listed.
func viewer(mayPatch ...string) *kubefake.Clientset {
	var objs []runtime.Object
	for _, ns := range []string{"app", "other"} {
		p := transferring(ns, "data", 40)
		objs = append(objs, &p)
	}
	kube := kubefake.NewClientset(objs...)
	allowed := func(ns string) bool {
		for _, m := range mayPatch {
			if m == ns {
				return true
			}
		}
		return false
	}
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rev := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		ra := rev.Spec.ResourceAttributes
		rev.Status.Allowed = ra.Verb == "patch" && ra.Resource == "persistentvolumeclaims" && allowed(ra.Namespace)
		return true, rev, nil
	})
	kube.PrependReactor("patch", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !allowed(a.GetNamespace()) {
			return true, nil, apierrors.NewForbidden(corev1.Resource("persistentvolumeclaims"), a.(k8stesting.PatchAction).GetName(), nil)
		}
		return false, nil, nil
	})
	return kube
}

func newServer(t *testing.T, allowCancel bool, kube *kubefake.Clientset) (*Server, *fakeSource) {
	t.Helper()
	src := &fakeSource{changed: make(chan struct{}, 1), in: view.Input{PVCs: []corev1.PersistentVolumeClaim{transferring("app", "data", 40), transferring("other", "data", 40)}}}
	return New(src, kube, nil, Options{AllowCancel: allowCancel, Hosts: []string{"dash.example.internal"}, Now: func() time.Time { return t0 }}), src
}

func do(s *Server, method, target, host string, body string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Host = host
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

func TestHostCheck(t *testing.T) {
	s, _ := newServer(t, false, viewer())
	tests := []struct {
		host string
		want int
	}{
		{"127.0.0.1:8089", http.StatusOK},
		{"localhost:8089", http.StatusOK},
		{"LOCALHOST.", http.StatusOK},
		{"[::1]:8089", http.StatusOK},
		{"127.0.0.2:8089", http.StatusOK},
		{"192.0.2.10:8089", http.StatusOK},
		{"dash.example.internal:8089", http.StatusOK},
		{"evil.example:8089", http.StatusMisdirectedRequest},
		{"localhost.evil.example", http.StatusMisdirectedRequest},
		{"", http.StatusMisdirectedRequest},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			w := do(s, "GET", "/api/page", tc.host, "", nil)
			assert.Equal(t, tc.want, w.Code, w.Body.String())
		})
	}
}

func TestPageAndHeaders(t *testing.T) {
	s, _ := newServer(t, false, viewer())
	w := do(s, "GET", "/", "127.0.0.1:8089", "", nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `<script src="app.js"`)
	assert.Equal(t, ContentSecurityPolicy, w.Header().Get("Content-Security-Policy"))
	assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
	for _, asset := range []string{"/app.js", "/app.css"} {
		assert.Equal(t, http.StatusOK, do(s, "GET", asset, "127.0.0.1", "", nil).Code, asset)
	}

	w = do(s, "GET", "/api/page", "127.0.0.1:8089", "", nil)
	var p PageJSON
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	require.Len(t, p.Groups, 2)
	assert.Equal(t, "app", p.Groups[0].Namespace)
	assert.Equal(t, 40.0, p.Groups[0].Backups[0].Items[0].Percent)
	assert.False(t, p.AllowCancel)
	assert.False(t, p.Groups[0].Backups[0].Items[0].CanCancel, "no cancel without --allow-cancel")
}

// TestEvents: the stream sends the page at once and again after a change, without a reload.
func TestEvents(t *testing.T) {
	s, src := newServer(t, false, viewer())
	s.opts.Refresh = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 1<<20)
	next := func() PageJSON {
		for lines.Scan() {
			if d, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				var p PageJSON
				require.NoError(t, json.Unmarshal([]byte(d), &p))
				return p
			}
		}
		t.Fatal("stream ended")
		return PageJSON{}
	}
	assert.Equal(t, 40.0, next().Groups[0].Backups[0].Items[0].Percent)
	src.setPVC(0, transferring("app", "data", 80))
	assert.Equal(t, 80.0, next().Groups[0].Backups[0].Items[0].Percent)
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name        string
		allowCancel bool
		body        string
		header      map[string]string
		want        int
		cancelled   string // the PVC whose cancel annotation is set afterwards
	}{
		{name: "off by default", body: `{"kind":"PVC","namespace":"app","name":"data","id":"uid-s1"}`, want: http.StatusForbidden},
		{name: "allowed", allowCancel: true, body: `{"kind":"PVC","namespace":"app","name":"data","id":"uid-s1"}`, want: http.StatusAccepted, cancelled: "app"},
		{name: "refused by the API server", allowCancel: true, body: `{"kind":"PVC","namespace":"other","name":"data","id":"uid-s1"}`, want: http.StatusForbidden},
		{name: "a form post", allowCancel: true, body: `kind=PVC`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: http.StatusUnsupportedMediaType},
		{name: "another origin", allowCancel: true, body: `{"kind":"PVC","namespace":"app","name":"data","id":"uid-s1"}`, header: map[string]string{"Origin": "http://evil.example"}, want: http.StatusForbidden},
		{name: "no id", allowCancel: true, body: `{"kind":"PVC","namespace":"app","name":"data"}`, want: http.StatusBadRequest},
		{name: "unknown kind", allowCancel: true, body: `{"kind":"Pod","namespace":"app","name":"data","id":"x"}`, want: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kube := viewer("app")
			s, _ := newServer(t, tc.allowCancel, kube)
			h := map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:8089"}
			for k, v := range tc.header {
				h[k] = v
			}
			w := do(s, "POST", "/api/cancel", "127.0.0.1:8089", tc.body, h)
			assert.Equal(t, tc.want, w.Code, w.Body.String())
			for _, ns := range []string{"app", "other"} {
				p, err := kube.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), "data", metav1.GetOptions{})
				require.NoError(t, err)
				if ns == tc.cancelled {
					assert.Equal(t, "uid-s1", p.Annotations[keys.TransferCancel])
				} else {
					assert.NotContains(t, p.Annotations, keys.TransferCancel, ns)
				}
			}
		})
	}
}

// TestCanCancel: the button is offered only where a SelfSubjectAccessReview says the viewer
// may patch the PVC.
func TestCanCancel(t *testing.T) {
	s, _ := newServer(t, true, viewer("app"))
	p := s.Build(context.Background())
	require.Len(t, p.Groups, 2)
	assert.True(t, p.AllowCancel)
	assert.True(t, p.Groups[0].Backups[0].Items[0].CanCancel, "app: may patch")
	assert.False(t, p.Groups[1].Backups[0].Items[0].CanCancel, "other: may not")
}
