package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/dashboard/view"
	"github.com/ferry-dev/ferry/internal/cdp"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/troubleshoot"
)

// failedClaim builds a PVC whose transfer failed with a known message.
func failedClaim(ns, name, message string) corev1.PersistentVolumeClaim {
	st := &operation.TransferStatus{Header: operation.Header{ID: "uid-s1", Phase: operation.PhaseFailed, Message: message}}
	return corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{
		keys.TransferID: "uid-s1", keys.TransferBackup: "s1", keys.TransferStatus: operation.Encode(st),
	}}}
}

// TestBrowser loads the page in headless Chromium against fake data: accessible names, a live
// update without a reload, no horizontal scrolling on a phone, dark mode, and no console or CSP
// errors. A missing chromium fails the test (hack/install-deps.sh installs it).
func TestBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const gold = `storage class "gold" does not exist on the target cluster (it has: standard)`
	b := velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "s1", Labels: map[string]string{keys.Migration: keys.MigrationStage, keys.VeleroScheduleName: "nightly"}}}
	b.Spec.IncludedNamespaces = []string{"shop-with-a-rather-long-namespace-name"}
	b.Status.Phase = velerov1.BackupPhaseWaitingForPluginOperations
	src := &fakeSource{changed: make(chan struct{}, 1), in: view.Input{
		Backups: []velerov1.Backup{b},
		PVCs: []corev1.PersistentVolumeClaim{
			transferring("shop-with-a-rather-long-namespace-name", "data-of-a-statefulset-replica-0", 30),
			failedClaim("shop-with-a-rather-long-namespace-name", "logs", gold),
		},
		ImageStreams: []view.ImageStream{{Namespace: "shop-with-a-rather-long-namespace-name", Name: "web", Annotations: map[string]string{keys.ImageCopyID: "uid-s1", keys.ImageCopyBackup: "s1"}}},
		Events: []corev1.Event{{
			InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "shop-with-a-rather-long-namespace-name", Name: "logs"},
			Type:           corev1.EventTypeWarning, Reason: "TransferFailed", Message: gold, LastTimestamp: metav1.Now(),
		}},
		Notices: []string{"You may not list backups.velero.io in namespace velero: they are not shown."},
	}}
	s := New(src, viewer(), nil, Options{})
	go s.Run(ctx)
	p := openPage(t, ctx, s.Handler(), func(p *cdp.Page) error { return p.Viewport(ctx, 1280, 800, false) })

	bar := func(name string) float64 {
		var v float64
		require.NoError(t, p.Eval(ctx, `Number(document.querySelector('[data-name="shop-with-a-rather-long-namespace-name/`+name+`"] [role=progressbar]')?.getAttribute("aria-valuenow") ?? -1)`, &v))
		return v
	}
	require.Eventually(t, func() bool { return bar("data-of-a-statefulset-replica-0") == 30 }, 10*time.Second, 50*time.Millisecond, "the page renders the PVC's progress")

	t.Run("accessible names", func(t *testing.T) {
		nodes, err := p.Accessibility(ctx)
		require.NoError(t, err)
		roles := map[string][]string{}
		for _, n := range nodes {
			if n.Ignored {
				continue
			}
			roles[n.Role] = append(roles[n.Role], n.Name)
			switch n.Role {
			case "progressbar", "button", "region", "article", "main":
				assert.NotEmpty(t, n.Name, "a %s without an accessible name", n.Role)
			}
		}
		assert.ElementsMatch(t, []string{
			"Progress of PVC shop-with-a-rather-long-namespace-name/data-of-a-statefulset-replica-0",
			"Progress of PVC shop-with-a-rather-long-namespace-name/logs",
			"Progress of Image stream shop-with-a-rather-long-namespace-name/web",
		}, roles["progressbar"])
		assert.Contains(t, roles["heading"], "Namespace shop-with-a-rather-long-namespace-name · schedule nightly")
		assert.Empty(t, roles["button"], "no Cancel button without --allow-cancel")
	})

	t.Run("failure with its fix, events, notice", func(t *testing.T) {
		var text string
		require.NoError(t, p.Eval(ctx, `document.body.innerText`, &text))
		assert.Contains(t, text, gold)
		assert.Contains(t, text, "Fix: "+strings.ReplaceAll(troubleshoot.Table[2].Fix, "`", ""), "the fix, its code spans as code")
		assert.Contains(t, text, "Events (1)")
		assert.Contains(t, text, "You may not list backups.velero.io in namespace velero")
	})

	t.Run("live update without reload", func(t *testing.T) {
		require.NoError(t, p.Eval(ctx, `window.stillThisPage = true`, nil))
		src.setPVC(0, transferring("shop-with-a-rather-long-namespace-name", "data-of-a-statefulset-replica-0", 70))
		require.Eventually(t, func() bool { return bar("data-of-a-statefulset-replica-0") == 70 }, 5*time.Second, 50*time.Millisecond)
		var same bool
		require.NoError(t, p.Eval(ctx, `window.stillThisPage === true`, &same))
		assert.True(t, same, "the page was not reloaded")
	})

	t.Run("phone width: no horizontal scrolling", func(t *testing.T) {
		require.NoError(t, p.Viewport(ctx, 390, 844, true))
		require.NoError(t, p.Eval(ctx, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))`, nil))
		var w struct{ Scroll, Client int }
		require.NoError(t, p.Eval(ctx, `({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})`, &w))
		assert.Equal(t, 390, w.Client)
		assert.LessOrEqual(t, w.Scroll, w.Client, "the page scrolls sideways at 390 px")
	})

	t.Run("dark mode", func(t *testing.T) {
		require.NoError(t, p.ColorScheme(ctx, "dark"))
		var bg, fg string
		require.NoError(t, p.Eval(ctx, `getComputedStyle(document.body).backgroundColor`, &bg))
		require.NoError(t, p.Eval(ctx, `getComputedStyle(document.body).color`, &fg))
		assert.Equal(t, "rgb(13, 17, 23)", bg)
		assert.Equal(t, "rgb(230, 237, 243)", fg)
		require.NoError(t, p.ColorScheme(ctx, "light"))
		require.NoError(t, p.Eval(ctx, `getComputedStyle(document.body).backgroundColor`, &bg))
		assert.Equal(t, "rgb(255, 255, 255)", bg)
	})

	assert.Empty(t, p.Errors(), "console or CSP errors")

	t.Run("the CSP holds, and its violations would be seen", func(t *testing.T) {
		require.NoError(t, p.Eval(ctx, `(() => { const s = document.createElement("script"); s.textContent = "window.injected = 1"; document.body.append(s); return window.injected === undefined })()`, nil))
		var injected bool
		require.NoError(t, p.Eval(ctx, `window.injected === 1`, &injected))
		assert.False(t, injected, "an inline script ran")
		require.Eventually(t, func() bool {
			for _, e := range p.Errors() {
				if strings.Contains(e, "Content Security Policy") {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond, "errors: %v", p.Errors())
	})
}

// TestBrowserCancel: with --allow-cancel and the right to patch, the button is there, named,
// and a click (after the confirmation) sets the cancel annotation.
func TestBrowserCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kube := viewer("app")
	s, _ := newServer(t, true, kube)
	s.opts.Now = time.Now
	go s.Run(ctx)
	p := openPage(t, ctx, s.Handler())
	var names []string
	require.Eventually(t, func() bool {
		require.NoError(t, p.Eval(ctx, `[...document.querySelectorAll("button")].map(b => b.getAttribute("aria-label"))`, &names))
		return len(names) > 0
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, []string{"Cancel the transfer of PVC app/data"}, names, "only where the viewer may patch")
	require.NoError(t, p.Eval(ctx, `window.confirm = () => true; document.querySelector("button").click()`, nil))
	require.Eventually(t, func() bool {
		pvc, err := kube.CoreV1().PersistentVolumeClaims("app").Get(ctx, "data", metav1.GetOptions{})
		return err == nil && pvc.Annotations[keys.TransferCancel] == "uid-s1"
	}, 5*time.Second, 50*time.Millisecond)
	var said string
	require.Eventually(t, func() bool {
		require.NoError(t, p.Eval(ctx, `document.getElementById("action").textContent`, &said))
		return said != ""
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, "Cancel requested for app/data.", said)
	assert.Empty(t, p.Errors())
}

// openPage serves h and opens it in headless Chromium, after setup (e.g. a viewport); all of it
// ends with the test.
func openPage(t *testing.T, ctx context.Context, h http.Handler, setup ...func(*cdp.Page) error) *cdp.Page {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	br, err := cdp.Launch()
	require.NoError(t, err)
	t.Cleanup(br.Close)
	p, err := br.NewPage(ctx)
	require.NoError(t, err)
	for _, f := range setup {
		require.NoError(t, f(p))
	}
	require.NoError(t, p.Navigate(ctx, srv.URL+"/"))
	return p
}
