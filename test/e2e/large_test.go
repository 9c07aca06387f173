//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// The large volume: 200 directories of 1000 files, 64 of them 32 MiB and the rest 1–10 KiB:
// 200,000 files, about 3 GiB.
const (
	largeDirs     = 200
	largePerDir   = 1000
	largeBigFiles = 64
	largeBigSize  = 32 << 20
)

// Peak resident memory each ferry process may reach on the large volume. send and serve keep
// no per-file state beyond rsync's, the data mover and the plugins none at all: a bound a
// volume ten times larger still meets (docs/benchmarks.md: 1M files).
var memoryBound = map[string]int64{
	"ferry-datamover send":       96 << 20,
	"ferry-datamover serve":      96 << 20,
	"ferry-datamover controller": 192 << 20,
	"ferry-plugins":              192 << 20,
}

// TestLargeVolume copies a volume of 200,000 files and 3 GiB, then stages it again after 0.1 %
// of it changed: the second moves only what changed and leaves the target equal to the source,
// and no ferry process (data mover, send, serve, plugins) goes past its memory bound. Its row in
// the README's reliability table gives the peaks.
func TestLargeVolume(t *testing.T) {
	// The shared stack: send and serve are this test's own transfer pods; the data mover's and
	// the plugins' peaks are over their whole life, other tests' work included.
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	sidecar := useSidecar(t, ctx, s, nil)

	ns := s.Namespace(t, "large")
	create(t, ctx, src, pvc(ns, "data"))
	dir := boundVolumeDir(t, ctx, src, ns, "data")
	start := time.Now()
	files, size := writeLargeTree(t, dir)
	t.Logf("wrote %d files, %.2f GiB in %s", files, float64(size)/(1<<30), time.Since(start).Round(time.Second))
	require.GreaterOrEqual(t, size, int64(3<<30))

	ferryPods := map[string]bool{sidecar.UID: true}
	mem := watchMemory(s.Pids, func() map[string]bool {
		sel := labels.SelectorFromSet(map[string]string{keys.ManagedByLabel: keys.ManagedByValue}).String()
		for _, c := range s.Clusters() {
			if pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel}); err == nil {
				for _, p := range pods.Items {
					ferryPods[string(p.UID)] = true
				}
			}
		}
		return ferryPods
	})
	defer mem.Stop()

	start = time.Now()
	full := stage(t, ctx, s, ns)
	fullTime := time.Since(start).Round(time.Second)
	assert.Equal(t, size, full.BytesTotal)
	assert.Equal(t, int64(files), full.Files)
	assert.Equal(t, int64(files), full.FilesSent)
	assert.GreaterOrEqual(t, full.BytesSent, size, "the first copy sends everything")

	// 0.1 %: 200 small files rewritten, one big file grown by 1 MiB, 10 files gone, 10 new.
	// The re-stage sending exactly those shows that the first copy left every other file with
	// the source's size and mtime; the comparison below, that every byte is the source's.
	changed := changeLargeTree(t, dir)
	start = time.Now()
	again := stage(t, ctx, s, ns)
	restageTime := time.Since(start).Round(time.Second)
	assert.Equal(t, int64(changed), again.FilesSent, "only the changed and new files are sent")
	assert.Less(t, again.BytesSent, int64(16<<20), "and a small part of the bytes")
	start = time.Now()
	require.NoError(t, treediff.Equal(dir, boundVolumeDir(t, ctx, dst, ns, "data"), treediff.All()))
	t.Logf("target equal to the source, compared in %s", time.Since(start).Round(time.Second))
	noTransferLeftovers(t, ctx, s, ns)

	peaks := mem.Stop()
	var kinds, summary []string
	for kind := range memoryBound {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		peak, ok := peaks[kind]
		if assert.True(t, ok, "%s was seen running", kind) {
			assert.LessOrEqual(t, peak, memoryBound[kind], "peak RSS of %s", kind)
		}
		summary = append(summary, fmt.Sprintf("%s %d MiB", strings.TrimPrefix(kind, "ferry-datamover "), peak>>20))
	}
	checkReliabilityTable(t, []string{fmt.Sprintf("| 3 GiB volume with 200k files | full copy, then a re-stage | Completed (%s, %s), %d files sent again; peak RSS: %s | %s |",
		fullTime, restageTime, again.FilesSent, strings.Join(summary, ", "), fullTime+restageTime)})
}

// stage runs a stage backup of ns and returns its PVC's completed transfer.
func stage(t *testing.T, ctx context.Context, s *stack.Stack, ns string) *operation.TransferStatus {
	t.Helper()
	b, err := migrationBackup(t, ctx, s.Source, "stage", ns, "--item-operation-timeout", "15m")
	require.NoError(t, err)
	require.Equal(t, velerov1.BackupPhaseCompleted, b.Status.Phase)
	st := transferStatus(t, ctx, s.Source, ns, "data")
	require.Equal(t, string(b.UID), st.ID)
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	t.Logf("%s: %d files, %d bytes, %d files and %d bytes sent, %d attempt(s)", b.Name, st.Files, st.BytesTotal, st.FilesSent, st.BytesSent, st.Attempts)
	return st
}

// writeLargeTree fills dir with the large volume and returns its file count and size.
func writeLargeTree(t *testing.T, dir string) (int, int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, largeBigSize+64<<10)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	var files int
	var size int64
	for d := range largeDirs {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", d))
		require.NoError(t, os.Mkdir(sub, 0o755))
		for f := range largePerDir {
			n := 1<<10 + rng.IntN(9<<10)
			if files < largeBigFiles {
				n = largeBigSize
			}
			off := rng.IntN(len(pool) - n)
			require.NoError(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", f)), pool[off:off+n], 0o644))
			files++
			size += int64(n)
		}
	}
	return files, size
}

// changeLargeTree changes 0.1 % of the large volume and returns how many files a stage must
// send: 200 small files rewritten, one big file grown, 10 new; 10 removed send nothing.
func changeLargeTree(t *testing.T, dir string) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	rewrite := func(p string) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		for i := range b {
			b[i] ^= byte(rng.Uint32())
		}
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	for i := range 200 {
		rewrite(filepath.Join(dir, fmt.Sprintf("d%03d", 100+i%100), fmt.Sprintf("f%04d", 500+i)))
	}
	big, err := os.OpenFile(filepath.Join(dir, "d000", "f0000"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = big.Write(make([]byte, 1<<20))
	require.NoError(t, err)
	require.NoError(t, big.Close())
	for i := range 10 {
		require.NoError(t, os.Remove(filepath.Join(dir, "d150", fmt.Sprintf("f%04d", i))))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "d199", fmt.Sprintf("new%02d", i)), []byte("new"), 0o644))
	}
	return 200 + 1 + 10
}
