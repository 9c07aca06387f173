//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/test/stack"
)

// fault is one row of the README's reliability table: something goes wrong while a migration
// runs, and what the user then sees.
type fault struct {
	name, when string
	// final: the migration is a final (its app quiesced), else a stage.
	final bool
	// backupArgs are extra `velero backup create` flags.
	backupArgs []string
	// mib is the size of the volume's big file (default 12): how long the copy takes.
	mib int
	// inject does the harm once the transfer copies (Transferring, bytes moved).
	inject func(t *testing.T, ctx context.Context, s *stack.Stack, ns string, backup *velerov1.Backup)
	// completes: the migration still completes; else it ends with the reason in want.
	completes bool
	want      string
}

// TestFaults runs the fault matrix: each fault hits a real migration mid-copy. Every one ends —
// completed after the fault with the target equal to the source, or failed or cancelled with a
// clear reason and the source app back at its replicas — leaving no transfer objects. The
// README's reliability table lists exactly these rows.
func TestFaults(t *testing.T) {
	// A stack of its own (Velero checking item operations every 5 s, for the timeout row): its
	// slowed ferry-config would slow the tests sharing the default one, and it runs beside them.
	t.Parallel()
	s := stacks.Get(t, stack.Options{OpenShift: true, VeleroArgs: []string{"--item-operation-sync-frequency=5s"}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	// Slow enough that each fault lands mid-copy (about 12 MiB at a quarter of the limit).
	slow := map[string]string{"bwlimitKBps": "2048"}
	useSidecar(t, ctx, s, slow)
	t.Cleanup(func() { useSidecar(t, context.Background(), s, nil) })

	deletePod := func(c *stack.Cluster, role string) func(*testing.T, context.Context, *stack.Stack, string, *velerov1.Backup) {
		return func(t *testing.T, ctx context.Context, s *stack.Stack, ns string, _ *velerov1.Backup) {
			sel := labels.SelectorFromSet(map[string]string{keys.TransferRole: role}).String()
			pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
			require.NoError(t, err)
			require.NotEmpty(t, pods.Items, "a %s pod runs", role)
			for _, p := range pods.Items {
				require.NoError(t, c.Kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}))
			}
		}
	}
	faults := []fault{
		{name: "server pod deleted", when: "mid-transfer (stage)", inject: deletePod(dst, "server"), completes: true},
		{name: "client pod deleted", when: "mid-transfer (final)", final: true, inject: deletePod(src, "client"), completes: true},
		{name: "Backup deleted", when: "mid-transfer (final)", final: true, want: "cancelled",
			inject: func(t *testing.T, ctx context.Context, s *stack.Stack, _ string, b *velerov1.Backup) {
				_, err := s.Source.Velero(ctx, "backup", "delete", b.Name, "--confirm")
				require.NoError(t, err)
			}},
		{name: "item-operation timeout", when: "mid-transfer (final, `--item-operation-timeout 20s`)", final: true,
			backupArgs: []string{"--item-operation-timeout", "20s"}, mib: 48, want: "cancelled"},
	}
	var (
		mu   sync.Mutex
		rows = map[string]string{}
	)
	// The rows run at once, each in its own namespace; the group ends when all have.
	t.Run("matrix", func(t *testing.T) {
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				runFault(t, ctx, s, f, func(row string) { mu.Lock(); rows[f.name] = row; mu.Unlock() })
			})
		}
	})
	var table []string
	for _, f := range faults {
		table = append(table, rows[f.name])
	}
	t.Logf("fault matrix:\n| fault | when | outcome | time |\n|---|---|---|---|\n%s", strings.Join(table, "\n"))

	// The README's reliability table names exactly these faults.
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := regexp.MustCompile(`(?s)<!-- faults -->(.*)<!-- /faults -->`).FindSubmatch(readme)
	require.NotNil(t, section, "README has a reliability table between <!-- faults --> markers")
	var documented, tested []string
	for _, m := range regexp.MustCompile(`(?m)^\| ([^|]+?) \| [^|]+ \| [^|]+ \| TestFaults \|$`).FindAllSubmatch(section[1], -1) {
		documented = append(documented, string(m[1]))
	}
	for _, f := range faults {
		tested = append(tested, f.name)
	}
	sort.Strings(documented)
	sort.Strings(tested)
	assert.Equal(t, tested, documented, "README reliability rows marked TestFaults")
}

// runFault runs one row of the matrix and reports its line of the table.
func runFault(t *testing.T, ctx context.Context, s *stack.Stack, f fault, report func(string)) {
	src, dst := s.Source, s.Target
	start := time.Now()
	mib := f.mib
	if mib == 0 {
		mib = 12
	}
	ns, srcDir := appWithData(t, ctx, s, "fault", 2, mib)
	before := treeSnapshot(t, srcDir)

	kind := "stage"
	if f.final {
		kind = "final"
	}
	b := startBackup(t, ctx, src, kind, append([]string{"--include-namespaces", ns, "--snapshot-volumes=false", "--labels", keys.Migration + "=" + kind}, f.backupArgs...)...)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := transferStatus(ct, ctx, src, ns, "data")
		require.Equal(ct, string(b.UID), st.ID)
		require.Equal(ct, operation.PhaseTransferring, st.Phase, st.Message)
		require.Greater(ct, st.BytesDone, int64(0), "some data moved")
	}, 3*time.Minute, 250*time.Millisecond)
	if f.inject != nil {
		f.inject(t, ctx, s, ns, b)
	}

	var st *operation.TransferStatus
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st = transferStatus(ct, ctx, src, ns, "data")
		require.Equal(ct, string(b.UID), st.ID)
		require.True(ct, st.Phase.Terminal(), "%s: %s", st.Phase, st.Message)
	}, 5*time.Minute, 500*time.Millisecond)
	outcome := string(st.Phase)
	if f.completes {
		assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
		require.NoError(t, treediff.Equal(srcDir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
		if f.final {
			requireReplicas(t, ctx, src, ns, "web", 0, "a completed final leaves the source app quiesced")
		}
	} else {
		assert.NotEqual(t, operation.PhaseCompleted, st.Phase)
		assert.Contains(t, strings.ToLower(st.Message), f.want)
		requireReplicas(t, ctx, src, ns, "web", 2, "a final that did not complete brings the source app back")
		assert.Contains(t, eventReasons(t, ctx, src, ns, "PersistentVolumeClaim", "data"), "AppRestarted")
		outcome += ": " + st.Message
	}
	assert.Equal(t, before, treeSnapshot(t, srcDir), "the source data is untouched")
	noTransferLeftovers(t, ctx, s, ns)
	report(fmt.Sprintf("| %s | %s | %s | %s |", f.name, f.when, outcome, time.Since(start).Round(time.Second)))
}

// requireReplicas waits until the Deployment asks for n replicas.
func requireReplicas(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string, n int32, why string) {
	t.Helper()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(ct, err)
		require.NotNil(ct, d.Spec.Replicas)
		require.Equal(ct, n, *d.Spec.Replicas, why)
	}, 2*time.Minute, 250*time.Millisecond)
}

// treeSnapshot is a listing of a tree (path, mode, size, mtime), to see it unchanged.
func treeSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	}))
	return b.String()
}
