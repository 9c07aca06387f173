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
	"k8s.io/utils/ptr"

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
	// setup runs once the app exists, before its backup starts.
	setup func(t *testing.T, ctx context.Context, s *stack.Stack, ns string)
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
	// On the "slow" stack: its faults hit only this test's pods, backups and endpoints, and it
	// wants the same slowed ferry-config as the stack's other tests.
	s := stacks.Parallel(t, slowStack)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	// Slow enough that each fault lands mid-copy (about 12 MiB at a quarter of the limit).
	useSidecar(t, ctx, s, slowConfig)

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
		{name: "network between the clusters cut for 20 s", when: "mid-transfer (final)", final: true, inject: cutNetwork(20 * time.Second), completes: true},
		{name: "Backup deleted", when: "mid-transfer (stage)", want: "cancelled", inject: deleteBackup},
		{name: "Backup deleted", when: "mid-transfer (final)", final: true, want: "cancelled", inject: deleteBackup},
		// Long enough to reach Transferring on a loaded machine (a cold CI run took over 20 s, a
		// loaded warm one over 60 s); the volume outlasts it at the slowed rate.
		{name: "item-operation timeout", when: "mid-transfer (final, `--item-operation-timeout 90s`)", final: true,
			backupArgs: []string{"--item-operation-timeout", "90s"}, mib: 128, want: "cancelled"},
	}
	var (
		mu    sync.Mutex
		table []string
	)
	report := func(row string) { mu.Lock(); table = append(table, row); mu.Unlock() }
	// The rows run side by side (as many as go test's -parallel lets), each in its own
	// namespace; the group ends when all have.
	t.Run("matrix", func(t *testing.T) {
		for _, f := range faults {
			t.Run(f.name+" "+f.when, func(t *testing.T) {
				t.Parallel()
				runFault(t, ctx, s, f, report)
			})
		}
	})
	checkReliabilityTable(t, table)
}

// TestStackFaults runs the faults that hit a whole cluster or the data mover itself, one after
// the other, on a stack of their own (beside TestFaults and the rest): the target's API server
// stopped, and the data mover gone with its Lease left behind.
func TestStackFaults(t *testing.T) {
	t.Parallel()
	s := stack.StartT(t, stack.Options{OpenShift: true, Name: "outage"})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	useSidecar(t, ctx, s, slowConfig)
	var table []string
	report := func(row string) { table = append(table, row) }
	t.Run("target API server stopped", func(t *testing.T) { targetAPIServerStopped(t, ctx, s, report) })
	t.Run("data mover killed while quiescing", func(t *testing.T) { report(killedWhileQuiescing(t, ctx, s)) })
	t.Run("stale Lease", func(t *testing.T) { report(staleLease(t, ctx, s, slowConfig)) })
	checkReliabilityTable(t, table)
}

// checkReliabilityTable logs the rows a fault test ran (| fault | when | outcome | time |) and
// checks that the README's reliability table lists exactly those faults for that test.
func checkReliabilityTable(t *testing.T, table []string) {
	sort.Strings(table)
	t.Logf("%s:\n| fault | when | outcome | time |\n|---|---|---|---|\n%s", t.Name(), strings.Join(table, "\n"))
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := regexp.MustCompile(`(?s)<!-- faults -->(.*)<!-- /faults -->`).FindSubmatch(readme)
	require.NotNil(t, section, "README has a reliability table between <!-- faults --> markers")
	var documented, tested []string
	for _, m := range regexp.MustCompile(`(?m)^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \| (\w+) \|$`).FindAllSubmatch(section[1], -1) {
		if string(m[3]) == t.Name() {
			documented = append(documented, string(m[1])+" | "+string(m[2]))
		}
	}
	for _, row := range table {
		cells := strings.Split(row, " | ")
		tested = append(tested, strings.TrimPrefix(cells[0], "| ")+" | "+cells[1])
	}
	sort.Strings(documented)
	assert.Equal(t, tested, documented, "README reliability rows marked %s", t.Name())
}

// deleteBackup deletes the migration's Backup, as `velero backup delete` does.
func deleteBackup(t *testing.T, ctx context.Context, s *stack.Stack, _ string, b *velerov1.Backup) {
	_, err := s.Source.Velero(ctx, "backup", "delete", b.Name, "--confirm")
	require.NoError(t, err)
}

// cutNetwork drops the traffic between the transfer's client and its server for d.
func cutNetwork(d time.Duration) func(*testing.T, context.Context, *stack.Stack, string, *velerov1.Backup) {
	return func(t *testing.T, ctx context.Context, s *stack.Stack, ns string, _ *velerov1.Backup) {
		st := transferStatus(t, ctx, s.Source, ns, "data")
		require.NotEmpty(t, st.Endpoint, "the status names the endpoint")
		heal, err := s.CutConnections(ctx, st.Endpoint)
		require.NoError(t, err)
		t.Cleanup(func() { _ = heal() })
		time.Sleep(d)
		require.NoError(t, heal())
	}
}

// migration is one row's app and backup, from the backup's start to its line of the table.
type migration struct {
	f          fault
	ns, srcDir string
	before     string
	backup     *velerov1.Backup
	start      time.Time
}

// startMigration makes an app with a volume of f.mib MiB (default 12) and starts f's backup.
func startMigration(t *testing.T, ctx context.Context, s *stack.Stack, f fault) *migration {
	m := &migration{f: f, start: time.Now()}
	mib := f.mib
	if mib == 0 {
		mib = 12
	}
	m.ns, m.srcDir = appWithData(t, ctx, s, "fault", 2, mib)
	m.before = treeSnapshot(t, m.srcDir)
	if f.setup != nil {
		f.setup(t, ctx, s, m.ns)
	}
	m.backup = startBackup(t, ctx, s.Source, m.kind(), append([]string{"--include-namespaces", m.ns, "--snapshot-volumes=false", "--labels", keys.Migration + "=" + m.kind()}, f.backupArgs...)...)
	return m
}

func (m *migration) kind() string {
	if m.f.final {
		return "final"
	}
	return "stage"
}

// waitCopying waits until the transfer has moved some data.
func (m *migration) waitCopying(t *testing.T, ctx context.Context, s *stack.Stack) {
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := transferStatus(ct, ctx, s.Source, m.ns, "data")
		require.Equal(ct, string(m.backup.UID), st.ID)
		require.Equal(ct, operation.PhaseTransferring, st.Phase, st.Message)
		require.Greater(ct, st.BytesDone, int64(0), "some data moved")
	}, 3*time.Minute, 250*time.Millisecond)
}

// end waits for the transfer to end, checks what the user would, and returns the row.
func (m *migration) end(t *testing.T, ctx context.Context, s *stack.Stack) string {
	src, dst, f := s.Source, s.Target, m.f
	var st *operation.TransferStatus
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st = transferStatus(ct, ctx, src, m.ns, "data")
		require.Equal(ct, string(m.backup.UID), st.ID)
		require.True(ct, st.Phase.Terminal(), "%s: %s", st.Phase, st.Message)
	}, 5*time.Minute, 500*time.Millisecond)
	outcome := string(st.Phase)
	if f.completes {
		assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
		require.NoError(t, treediff.Equal(m.srcDir, boundVolumeDir(t, ctx, dst, m.ns, "data"), treediff.All()))
		if f.final {
			requireReplicas(t, ctx, src, m.ns, "web", 0, "a completed final leaves the source app quiesced")
		}
	} else {
		assert.NotEqual(t, operation.PhaseCompleted, st.Phase)
		assert.Contains(t, strings.ToLower(st.Message), f.want)
		requireReplicas(t, ctx, src, m.ns, "web", 2, "a migration that did not complete leaves the source app running")
		if f.final {
			assert.Contains(t, eventReasons(t, ctx, src, m.ns, "PersistentVolumeClaim", "data"), "AppRestarted")
		}
		outcome += ": " + st.Message
	}
	assert.Equal(t, m.before, treeSnapshot(t, m.srcDir), "the source data is untouched")
	noTransferLeftovers(t, ctx, s, m.ns)
	return fmt.Sprintf("| %s | %s | %s | %s |", f.name, f.when, outcome, time.Since(m.start).Round(time.Second))
}

// runFault runs one row of the matrix and reports its line of the table.
func runFault(t *testing.T, ctx context.Context, s *stack.Stack, f fault, report func(string)) {
	m := startMigration(t, ctx, s, f)
	m.waitCopying(t, ctx, s)
	if f.inject != nil {
		f.inject(t, ctx, s, m.ns, m.backup)
	}
	report(m.end(t, ctx, s))
}

// targetAPIServerStopped stops the target's kube-apiserver for 30 s (longer if the second
// backup is slow to reach Preparing) while one migration copies and another, a final, waits in
// Preparing; during the outage the data mover is also SIGKILLed and a new one started. Both
// migrations complete once the target is back.
func targetAPIServerStopped(t *testing.T, ctx context.Context, s *stack.Stack, report func(string)) {
	const name, outage = "target API server stopped for 30 s", 30 * time.Second
	copying := startMigration(t, ctx, s, fault{name: name, when: "mid-transfer (stage)", mib: 24, completes: true})
	copying.waitCopying(t, ctx, s)
	down := time.Now()
	require.NoError(t, s.Target.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = s.Target.StartAPIServer(context.Background())
		}
	})
	preparing := startMigration(t, ctx, s, fault{name: name + ", and the data mover SIGKILLed", when: "during Preparing (final)", final: true, completes: true})
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := transferStatus(ct, ctx, s.Source, preparing.ns, "data")
		require.Equal(ct, string(preparing.backup.UID), st.ID)
		require.Equal(ct, operation.PhasePreparing, st.Phase)
		require.Contains(ct, st.Message, "retrying", "the status says it waits for the target")
	}, 2*time.Minute, 250*time.Millisecond)
	// Not useSidecar: it would write ferry-config to the target, which is down.
	sidecar, err := s.EnsureSidecar(ctx)
	require.NoError(t, err)
	require.NoError(t, sidecar.Kill(ctx))
	_, err = s.EnsureSidecar(ctx)
	require.NoError(t, err)
	time.Sleep(time.Until(down.Add(outage))) // at least the outage, however long Velero took
	require.NoError(t, s.Target.StartAPIServer(ctx))
	restarted = true
	back := time.Now()
	t.Logf("target API server back after %s", back.Sub(down).Round(time.Second))
	// What the final waited for once the target was back (the target's own controllers resume
	// their watches with back-off), for the log.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watched sync.WaitGroup
	watched.Add(1)
	defer func() { stopWatch(); watched.Wait() }()
	go func() {
		defer watched.Done()
		last := ""
		for watchCtx.Err() == nil {
			var st *operation.TransferStatus
			if p, err := s.Source.Kube.CoreV1().PersistentVolumeClaims(preparing.ns).Get(watchCtx, "data", metav1.GetOptions{}); err == nil {
				st, _ = operation.ParseTransferStatus(p.Annotations)
			}
			if st != nil {
				if st.Phase != operation.PhasePreparing {
					t.Logf("final: %s %s after the target came back", st.Phase, time.Since(back).Round(time.Second))
					return
				}
				if st.Message != last {
					last = st.Message
					t.Logf("final, Preparing, %s after the target came back: %s", time.Since(back).Round(time.Second), last)
				}
			}
			time.Sleep(time.Second)
		}
	}()
	report(copying.end(t, ctx, s))
	report(preparing.end(t, ctx, s))
}

// killedWhileQuiescing adds a workload whose pod does not stop: it ignores SIGTERM and has ten
// minutes to go, so once deleted it stays Terminating, as a pod slow to shut down does. A final
// waits in Quiescing; the test SIGKILLs the data mover there, and kubelet starts it again; once
// the pod is gone (the test force-deletes it) the new process goes on from what the status and
// the workloads' annotations say, copies, and the app stays quiesced as a completed final
// leaves it.
func killedWhileQuiescing(t *testing.T, ctx context.Context, s *stack.Stack) string {
	var heldNS string
	release := func() {
		if heldNS == "" {
			return
		}
		pods, err := s.Source.Kube.CoreV1().Pods(heldNS).List(context.Background(), metav1.ListOptions{LabelSelector: appLabel + "=stuck"})
		if err != nil {
			return
		}
		for _, p := range pods.Items {
			_ = s.Source.Kube.CoreV1().Pods(heldNS).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
	}
	t.Cleanup(release)
	f := fault{name: "data mover SIGKILLed", when: "during Quiescing (final)", final: true, mib: 4, completes: true,
		setup: func(t *testing.T, ctx context.Context, s *stack.Stack, ns string) {
			stuck := deploymentUsing(ns, "stuck", 1, "data", appImage(s))
			stuck.Spec.Template.Spec.Containers[0].Command = []string{"sh", "-c", `trap "" TERM; while true; do sleep 1; done`}
			stuck.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](600)
			create(t, ctx, s.Source, stuck)
			require.EventuallyWithT(t, func(ct *assert.CollectT) {
				runningPod(ct, ctx, s.Source, ns, "stuck")
			}, 2*time.Minute, 250*time.Millisecond)
			heldNS = ns
		}}
	m := startMigration(t, ctx, s, f)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := transferStatus(ct, ctx, s.Source, m.ns, "data")
		require.Equal(ct, string(m.backup.UID), st.ID)
		require.Equal(ct, operation.PhaseQuiescing, st.Phase)
		require.Contains(ct, st.Message, "waiting for 1 pods using the PVC to stop")
	}, 2*time.Minute, 250*time.Millisecond)
	sidecar, err := s.EnsureSidecar(ctx)
	require.NoError(t, err)
	require.NoError(t, sidecar.Kill(ctx))
	_, err = s.EnsureSidecar(ctx)
	require.NoError(t, err)
	requireReplicas(t, ctx, s.Source, m.ns, "web", 0, "the app stays scaled down while the new data mover waits")
	requireReplicas(t, ctx, s.Source, m.ns, "stuck", 0, "the app stays scaled down while the new data mover waits")
	release()
	return m.end(t, ctx, s)
}

// staleLease stops the data mover (its Deployment scaled to zero): once its Lease is older than
// its duration (plus the plugins' grace), a migration backup fails at once saying the data mover
// is not running, instead of waiting for the item-operation timeout; ordinary data stays
// untouched.
func staleLease(t *testing.T, ctx context.Context, s *stack.Stack, cfg map[string]string) string {
	useSidecar(t, ctx, s, cfg)
	require.NoError(t, s.StopSidecar(ctx))
	t.Cleanup(func() { useSidecar(t, context.Background(), s, cfg) })
	m := &migration{f: fault{name: "stale Lease (data mover stopped)", when: "at backup (final)", final: true}}
	m.ns, m.srcDir = appWithData(t, ctx, s, "fault", 2, 1)
	m.before = treeSnapshot(t, m.srcDir)
	// Stale: older than its duration plus the plugins' 30 s grace.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		l, err := s.Source.Kube.CoordinationV1().Leases(s.Source.VeleroNamespace).Get(ctx, operation.SidecarLease, metav1.GetOptions{})
		require.NoError(ct, err)
		require.NotNil(ct, l.Spec.RenewTime)
		require.NotNil(ct, l.Spec.LeaseDurationSeconds)
		require.Greater(ct, time.Since(l.Spec.RenewTime.Time), time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second+31*time.Second)
	}, 2*time.Minute, time.Second)
	m.start = time.Now()
	b, err := migrationBackup(t, ctx, s.Source, "final", m.ns)
	require.Error(t, err)
	assert.Equal(t, velerov1.BackupPhasePartiallyFailed, b.Status.Phase)
	assert.Contains(t, describeBackup(t, ctx, s.Source, b.Name), "ferry-datamover is not running")
	requireReplicas(t, ctx, s.Source, m.ns, "web", 2, "nothing was quiesced")
	assert.Equal(t, m.before, treeSnapshot(t, m.srcDir), "the source data is untouched")
	noTransferLeftovers(t, ctx, s, m.ns)
	return fmt.Sprintf("| %s | %s | %s: the data mover is not running | %s |", m.f.name, m.f.when, b.Status.Phase, time.Since(m.start).Round(time.Second))
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
