//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/cdp"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/test/stack"
)

// TestDashboard watches a real stage in `ferry-datamover dashboard` through headless Chromium:
// the PVC's bar advances and reaches 100 %, the Backup reaches Completed and the last success
// appears. A service account with only `view` on one namespace sees that namespace's migration,
// not another namespace migrating at the same time, and a notice for what it may not list.
// _output/dashboard.png is written every run; FERRY_UPDATE_SCREENSHOT=1 also rewrites the
// README's docs/dashboard.png (run the test alone for it: the admin's page shows every
// migration on the stack).
func TestDashboard(t *testing.T) {
	// On the "slow" stack: its slowed ferry-config keeps the stage long enough to watch.
	s := stacks.Parallel(t, slowStack)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	src := s.Source
	// ~40 MiB at an effective rate of about a quarter of the setting: a stage of about 1.5
	// minutes, long enough to watch the bar move.
	useSidecar(t, ctx, s, slowConfig)

	shop, other := s.Namespace(t, "dash"), s.Namespace(t, "dashother")
	create(t, ctx, src, pvc(shop, "data"), pvc(other, "data"))
	writeRandom(t, boundVolumeDir(t, ctx, src, shop, "data"), 10, 4<<20)
	writeRandom(t, boundVolumeDir(t, ctx, src, other, "data"), 4, 4<<20)

	// The viewer: a service account with the built-in view role in shop only, and a real token.
	create(t, ctx, src, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "viewer"}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "viewer-view"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: shop, Name: "viewer"}},
		})
	kc, err := src.TokenKubeconfig(ctx, shop, "viewer")
	require.NoError(t, err)
	viewerKubeconfig := filepath.Join(t.TempDir(), "viewer.kubeconfig")
	require.NoError(t, os.WriteFile(viewerKubeconfig, kc, 0o600))

	admin := serveDashboard(t, ctx, s, "admin", src.Kubeconfig)
	viewer := serveDashboard(t, ctx, s, "viewer", viewerKubeconfig)

	br, err := cdp.Launch()
	require.NoError(t, err)
	defer br.Close()
	adminPage, err := br.NewPage(ctx)
	require.NoError(t, err)
	require.NoError(t, adminPage.Viewport(ctx, 1280, 800, false))
	require.NoError(t, adminPage.Navigate(ctx, admin+"/"))
	viewerPage, err := br.NewPage(ctx)
	require.NoError(t, err)
	require.NoError(t, viewerPage.Navigate(ctx, viewer+"/"))

	b := startBackup(t, ctx, src, "stage", "--include-namespaces", shop+","+other, "--snapshot-volumes=false", "--labels", keys.Migration+"=stage")
	start := time.Now()

	var seen []float64
	shot, viewerChecked := false, false
	var last pvcOnPage
	// A loop, not require.Eventually: the checks below fail the test and run subtests, which
	// must happen on the test's goroutine.
	for deadline := time.Now().Add(8 * time.Minute); last.Phase != "Completed"; time.Sleep(500 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the PVC's transfer never showed Completed; last seen %+v, progress %v", last, seen)
		last = readPVC(t, ctx, adminPage, shop)
		if last.Percent < 0 {
			continue
		}
		if len(seen) == 0 || seen[len(seen)-1] != last.Percent {
			seen = append(seen, last.Percent)
			t.Logf("%5.1fs %s/data: %.1f %% (%s), backup %s %s", time.Since(start).Seconds(), shop, last.Percent, last.Phase, last.Backup, last.BackupPhase)
		}
		if !viewerChecked && last.Phase == "Transferring" {
			checkViewer(t, ctx, adminPage, viewerPage, shop, other)
			viewerChecked = true
		}
		if !shot && last.Percent >= 20 && last.Percent <= 80 {
			screenshot(t, ctx, adminPage)
			shot = true
		}
	}
	assert.True(t, viewerChecked, "the viewer's page was never checked while the transfer ran")
	assert.True(t, shot, "no screenshot mid-stage: progress seen %v", seen)

	t.Run("the bar advances and reaches 100 %", func(t *testing.T) {
		assert.Equal(t, 100.0, seen[len(seen)-1])
		var moving int
		for i := 1; i < len(seen); i++ {
			// rsync's scan can take back a couple of points
			assert.GreaterOrEqual(t, seen[i], seen[i-1]-3, "progress went back: %v", seen)
			if seen[i-1] > 0 && seen[i] < 100 && seen[i] > seen[i-1] {
				moving++
			}
		}
		assert.GreaterOrEqual(t, moving, 3, "the bar advanced in steps: %v", seen)
	})

	_, err = src.WaitBackup(ctx, b.Name)
	require.NoError(t, err)
	t.Run("the Backup reaches Completed and the last success shows", func(t *testing.T) {
		require.Eventually(t, func() bool {
			last = readPVC(t, ctx, adminPage, shop)
			return last.BackupPhase == string(velerov1.BackupPhaseCompleted)
		}, time.Minute, 500*time.Millisecond, "last seen %+v", last)
		assert.Equal(t, b.Name, last.Backup)
		assert.NotEqual(t, "never", last.LastSuccess)
		assert.Contains(t, last.LastSuccess, "stage moved ")
		assert.Contains(t, last.LastSuccess, " MiB")
	})
	assert.Empty(t, adminPage.Errors(), "console or CSP errors")
	assert.Empty(t, viewerPage.Errors(), "console or CSP errors")
}

// pvcOnPage is what the dashboard shows of a PVC "data".
type pvcOnPage struct {
	Percent                    float64
	Phase, Backup, BackupPhase string
	LastSuccess                string
}

// readPVC reads the page as a user does: the bar's value, the phases, the last success.
func readPVC(t *testing.T, ctx context.Context, p *cdp.Page, ns string) pvcOnPage {
	t.Helper()
	out := pvcOnPage{Percent: -1}
	require.NoError(t, p.Eval(ctx, `(() => {
		const a = document.querySelector('[data-name="`+ns+`/data"]');
		if (!a) return {percent: -1};
		const facts = Object.fromEntries([...a.querySelectorAll("dl.facts > div")].map(d => [d.querySelector("dt").textContent, d.querySelector("dd").textContent]));
		const b = a.closest("[data-backup]");
		return {percent: Number(a.querySelector("[role=progressbar]").getAttribute("aria-valuenow")), phase: a.querySelector(".phase").textContent,
			backup: b.dataset.backup, backupPhase: b.querySelector(":scope > header .phase").textContent, lastSuccess: facts["Last success"]};
	})()`, &out))
	return out
}

// checkViewer: while both namespaces migrate, the admin sees both, the view-only viewer only
// its own, with notices for what it may not list.
func checkViewer(t *testing.T, ctx context.Context, adminPage, viewerPage *cdp.Page, shop, other string) {
	t.Helper()
	t.Run("a view-only viewer sees its namespace only", func(t *testing.T) {
		var adminText string
		require.NoError(t, adminPage.Eval(ctx, `document.body.innerText`, &adminText))
		assert.Contains(t, adminText, "PVC "+other+"/data", "the admin sees the other namespace migrating")
		var text string
		for deadline := time.Now().Add(time.Minute); readPVC(t, ctx, viewerPage, shop).Percent < 0; time.Sleep(500 * time.Millisecond) {
			require.NoError(t, viewerPage.Eval(ctx, `document.body.innerText`, &text))
			require.True(t, time.Now().Before(deadline), "the viewer never saw its PVC:\n%s", text)
		}
		require.NoError(t, viewerPage.Eval(ctx, `document.body.innerText`, &text))
		assert.NotContains(t, text, other, "the viewer sees another namespace")
		assert.Contains(t, text, "You may not list backups.velero.io in namespace velero")
		assert.Contains(t, text, "You may not list namespaces (forbidden): showing namespace "+shop+" only")
		assert.Contains(t, text, "(Backup not readable: phase from its items)")
	})
}

func screenshot(t *testing.T, ctx context.Context, p *cdp.Page) {
	t.Helper()
	png, err := p.Screenshot(ctx, false)
	require.NoError(t, err)
	root, err := stack.RepoRoot()
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "_output"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "_output", "dashboard.png"), png, 0o644))
	if os.Getenv("FERRY_UPDATE_SCREENSHOT") == "1" {
		require.NoError(t, os.WriteFile(filepath.Join(root, "docs", "dashboard.png"), png, 0o644))
		t.Log("docs/dashboard.png updated")
	}
}

// serveDashboard runs `ferry-datamover dashboard` with a kubeconfig and returns its URL once it
// answers.
func serveDashboard(t *testing.T, ctx context.Context, s *stack.Stack, who, kubeconfig string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	p, err := s.StartProcess(stack.ProcessSpec{
		Name: fmt.Sprintf("dashboard-%s-%d", who, time.Now().UnixNano()),
		Path: filepath.Join(s.FerryBinDir, "ferry-datamover"),
		Args: []string{"dashboard", "--kubeconfig", kubeconfig, "--listen", addr},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	url := "http://" + addr
	require.Eventually(t, func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/page", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "the dashboard did not answer:\n%s", p.Tail(20))
	return url
}

// writeRandom writes n files of size random bytes (incompressible, so the bandwidth limit
// decides the time).
func writeRandom(t *testing.T, dir string, n, size int) {
	t.Helper()
	b := make([]byte, size)
	for i := range n {
		_, _ = rand.Read(b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("blob-%02d.bin", i)), b, 0o640))
	}
}
