// Package dashboard serves ferry's migration dashboard: a local page, in the spirit of
// `kubectl proxy`, that shows what the collector sees with the viewer's own credentials and
// updates live. It has no authentication of its own, so it listens on loopback, answers only
// requests whose Host is its own (DNS rebinding would otherwise let any web page read it), and
// changes nothing unless --allow-cancel is given.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/dashboard/view"
)

//go:embed web
var webFS embed.FS

// Source is what the page shows: the collector, or a fake in tests.
type Source interface {
	Snapshot(now time.Time) view.Input
	Changed() <-chan struct{}
}

// Options shape the server.
type Options struct {
	// AllowCancel shows a Cancel button to viewers who may patch the item, and accepts it.
	AllowCancel bool
	// Hosts are the host names (without port) the Host header may name besides localhost and
	// IP addresses, which are always accepted.
	Hosts []string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Refresh is how often the page is rebuilt without a change (relative times, ETAs); 0 is 2 s.
	Refresh time.Duration
}

// ContentSecurityPolicy allows the page its own script, style and event stream, nothing else.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Server serves the page and its live data.
type Server struct {
	src  Source
	kube kubernetes.Interface
	dyn  dynamic.Interface
	opts Options
	hub  hub
	may  *accessCache
}

// New returns a server; kube and dyn are the viewer's clients (cancel, and its access checks).
func New(src Source, kube kubernetes.Interface, dyn dynamic.Interface, opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh == 0 {
		opts.Refresh = 2 * time.Second
	}
	s := &Server{src: src, kube: kube, dyn: dyn, opts: opts, may: newAccessCache(kube, opts.Now)}
	s.hub.next = make(chan struct{})
	return s
}

// PageJSON is the page model the browser renders.
type PageJSON struct {
	view.Page
	AllowCancel bool `json:"allowCancel"`
}

// Build makes the page from the source now (and asks, if cancel is on, what the viewer may
// cancel).
func (s *Server) Build(ctx context.Context) PageJSON {
	p := PageJSON{Page: view.Build(s.src.Snapshot(s.opts.Now())), AllowCancel: s.opts.AllowCancel}
	if s.opts.AllowCancel {
		for gi := range p.Groups {
			for bi := range p.Groups[gi].Backups {
				items := p.Groups[gi].Backups[bi].Items
				for ii := range items {
					it := &items[ii]
					it.CanCancel = it.Cancellable && it.ID != "" && s.may.patch(ctx, it.Kind, it.Namespace, it.Name)
				}
			}
		}
	}
	return p
}

// Run rebuilds the page on every change (at most every 250 ms) and every Refresh, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Refresh)
	defer t.Stop()
	for {
		b, _ := json.Marshal(s.Build(ctx))
		s.hub.set(b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.src.Changed():
			// let a burst of changes (one transfer updates PVC and Event together) land first
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// hub holds the newest page and wakes the event streams when it changes.
type hub struct {
	mu   sync.Mutex
	data []byte
	next chan struct{}
}

func (h *hub) set(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.data = b
	close(h.next)
	h.next = make(chan struct{})
}

func (h *hub) get() ([]byte, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.data, h.next
}

// Handler serves the page, /api/page, /api/events and (with AllowCancel) /api/cancel.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/page", s.page)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("POST /api/cancel", s.cancel)
	return s.guard(mux)
}

// guard refuses requests for another host (DNS rebinding) and sets the security headers.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			http.Error(w, "unknown host "+r.Host+": the dashboard answers only to its own address (add --accept-host to serve another name)", http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	// An address literal cannot be rebound: only a page served from that address sends it.
	if net.ParseIP(host) != nil {
		return true
	}
	for _, h := range s.opts.Hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

func (s *Server) current(r *http.Request) ([]byte, <-chan struct{}) {
	b, next := s.hub.get()
	if b == nil {
		// not running yet (tests that only serve): build now
		b, _ = json.Marshal(s.Build(r.Context()))
	}
	return b, next
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	b, _ := s.current(r)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// events streams every new page as a server-sent event.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	b, next := s.current(r)
	for {
		if _, err := w.Write([]byte("data: " + string(b) + "\n\n")); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-next:
			b, next = s.hub.get()
		}
	}
}
