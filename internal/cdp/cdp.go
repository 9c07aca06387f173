// Package cdp drives a headless Chromium over the DevTools protocol in pipe mode
// (--remote-debugging-pipe: JSON messages ended by a NUL byte on file descriptors 3 and 4), so the
// dashboard's browser tests need no WebSocket library and no open debugging port. It holds only
// what those tests use: pages, navigation, evaluation, viewport, colour scheme, screenshots, the
// accessibility tree and the console/CSP errors a page logs.
package cdp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Browser is a running headless Chromium.
type Browser struct {
	cmd  *exec.Cmd
	out  *os.File // the browser reads our commands here (its fd 3)
	dir  string
	done chan struct{}

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan message
	sessions map[string]*Page
	err      error
}

type message struct {
	ID     int64           `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int
		Message string
	} `json:"error,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

// Executable finds Debian's chromium; tests fail (not skip) when it is missing:
// hack/install-deps.sh installs it.
func Executable() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (hack/install-deps.sh installs Debian's chromium)")
}

// Launch starts a headless Chromium with a fresh profile.
func Launch() (*Browser, error) {
	exe, err := Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-cdp-")
	if err != nil {
		return nil, err
	}
	toBrowser, ours, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	theirs, fromBrowser, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe,
		"--headless=new", "--remote-debugging-pipe", "--user-data-dir="+dir,
		// as root in a container the sandbox cannot start; the pages are the test's own
		"--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--mute-audio", "--hide-scrollbars",
		"--font-render-hinting=none", "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting chromium: %w", err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	b := &Browser{cmd: cmd, out: ours, dir: dir, done: make(chan struct{}), pending: map[int64]chan message{}, sessions: map[string]*Page{}}
	go b.read(theirs)
	return b, nil
}

func (b *Browser) read(in *os.File) {
	defer close(b.done)
	r := bufio.NewReaderSize(in, 1<<20)
	for {
		raw, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.err = fmt.Errorf("chromium closed the pipe: %w", err)
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m message
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.pending[m.ID]; ok {
				ch <- m
				delete(b.pending, m.ID)
			}
		} else if p := b.sessions[m.SessionID]; p != nil {
			p.event(m)
		}
		b.mu.Unlock()
	}
}

// call sends a command (to a page's session when session is not "") and decodes its result.
func (b *Browser) call(ctx context.Context, session, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan message, 1)
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return b.err
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(message{ID: id, Method: method, Params: p, SessionID: session})
	if _, err := b.out.Write(append(msg, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", method, b.err)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	}
}

// Close stops the browser and removes its profile.
func (b *Browser) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.call(ctx, "", "Browser.close", nil, nil)
	select {
	case <-b.done:
	case <-ctx.Done():
		_ = b.cmd.Process.Kill()
	}
	_ = b.cmd.Wait()
	b.out.Close()
	os.RemoveAll(b.dir)
}

// Page is one tab.
type Page struct {
	b       *Browser
	session string

	mu     sync.Mutex
	errors []string
	loaded chan struct{}
}

// NewPage opens a tab and enables the domains the helpers read.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	var created struct{ TargetID string }
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &created); err != nil {
		return nil, err
	}
	var attached struct{ SessionID string }
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: attached.SessionID, loaded: make(chan struct{}, 1)}
	b.mu.Lock()
	b.sessions[p.session] = p
	b.mu.Unlock()
	for _, domain := range []string{"Page", "Runtime", "Log"} {
		if err := p.Call(ctx, domain+".enable", nil, nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Call sends a command to the page's session.
func (p *Page) Call(ctx context.Context, method string, params, result any) error {
	return p.b.call(ctx, p.session, method, params, result)
}

// event records what a page reports: errors logged (console, uncaught exceptions, CSP
// violations, failed loads) and the end of loads.
func (p *Page) event(m message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch m.Method {
	case "Page.loadEventFired":
		select {
		case p.loaded <- struct{}{}:
		default:
		}
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		if json.Unmarshal(m.Params, &e) == nil && (e.Type == "error" || e.Type == "warning" || e.Type == "assert") {
			text := "console." + e.Type + ":"
			for _, a := range e.Args {
				text += fmt.Sprintf(" %v%s", a.Value, a.Description)
			}
			p.errors = append(p.errors, text)
		}
	case "Runtime.exceptionThrown":
		var e struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		_ = json.Unmarshal(m.Params, &e)
		p.errors = append(p.errors, "exception: "+e.ExceptionDetails.Text+" "+e.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var e struct {
			Entry struct{ Level, Source, Text, URL string }
		}
		if json.Unmarshal(m.Params, &e) == nil && (e.Entry.Level == "error" || e.Entry.Level == "warning") {
			p.errors = append(p.errors, fmt.Sprintf("%s %s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
		}
	}
}

// Errors returns what the page logged as errors or warnings so far.
func (p *Page) Errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errors...)
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(ctx context.Context, url string) error {
	select {
	case <-p.loaded:
	default:
	}
	var r struct{ ErrorText string }
	if err := p.Call(ctx, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("loading %s: %s", url, r.ErrorText)
	}
	select {
	case <-p.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("loading %s: %w", url, ctx.Err())
	}
}

// Eval evaluates a JavaScript expression (awaiting a promise) and decodes its value into out.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	if err := p.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("evaluating %q: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Viewport sets the window size in CSS pixels; mobile also sets a phone's device scale and
// touch-style viewport handling.
func (p *Page) Viewport(ctx context.Context, width, height int, mobile bool) error {
	scale := 1.0
	if mobile {
		scale = 3
	}
	return p.Call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}, nil)
}

// ColorScheme emulates prefers-color-scheme: "light" or "dark".
func (p *Page) ColorScheme(ctx context.Context, scheme string) error {
	return p.Call(ctx, "Emulation.setEmulatedMedia", map[string]any{"features": []map[string]string{{"name": "prefers-color-scheme", "value": scheme}}}, nil)
}

// Screenshot returns a PNG of the viewport (the whole page when full).
func (p *Page) Screenshot(ctx context.Context, full bool) ([]byte, error) {
	var r struct{ Data string }
	if err := p.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": full}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// AXNode is a node of the accessibility tree: its role and its computed accessible name.
type AXNode struct {
	Role, Name string
	Ignored    bool
}

// Accessibility returns the page's full accessibility tree, flattened.
func (p *Page) Accessibility(ctx context.Context) ([]AXNode, error) {
	var r struct {
		Nodes []struct {
			Ignored bool
			Role    *struct{ Value string }
			Name    *struct{ Value string }
		}
	}
	if err := p.Call(ctx, "Accessibility.getFullAXTree", nil, &r); err != nil {
		return nil, err
	}
	out := make([]AXNode, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		var a AXNode
		a.Ignored = n.Ignored
		if n.Role != nil {
			a.Role = n.Role.Value
		}
		if n.Name != nil {
			a.Name = n.Name.Value
		}
		out = append(out, a)
	}
	return out, nil
}
