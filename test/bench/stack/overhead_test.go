// Package stackbench measures what ferry's plugins cost a plain Velero migration: a backup on
// the source and a restore on the target of a namespace with 5,000 objects, on the local
// two-cluster stack, with ferry's plugins loaded and without them. `make bench` runs it; the
// result is the ratio with/without (target ≤ 1.2).
package stackbench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/test/stack"
)

// objects is the namespace's content: 5,000 objects of the kinds a real namespace holds most,
// including kinds ferry's actions apply to (service accounts, services, deployments).
var objects = []struct {
	kind  string
	count int
	make  func(ns string, i int) crclient.Object
}{
	{"ConfigMap", 2000, func(ns string, i int) crclient.Object {
		return &corev1.ConfigMap{ObjectMeta: meta(ns, "cm", i), Data: map[string]string{"app.properties": strings.Repeat("key=value\n", 20)}}
	}},
	{"Secret", 2000, func(ns string, i int) crclient.Object {
		return &corev1.Secret{ObjectMeta: meta(ns, "secret", i), Data: map[string][]byte{"password": []byte(fmt.Sprintf("s3cr3t-%d", i))}}
	}},
	{"ServiceAccount", 400, func(ns string, i int) crclient.Object {
		return &corev1.ServiceAccount{ObjectMeta: meta(ns, "sa", i)}
	}},
	{"Service", 400, func(ns string, i int) crclient.Object {
		return &corev1.Service{ObjectMeta: meta(ns, "svc", i), Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": fmt.Sprintf("app-%d", i)}, Ports: []corev1.ServicePort{{Port: 8080}},
		}}
	}},
	{"Deployment", 200, func(ns string, i int) crclient.Object {
		labels := map[string]string{"app": fmt.Sprintf("app-%d", i)}
		return &appsv1.Deployment{ObjectMeta: meta(ns, "deploy", i), Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0), // no pods: the controllers' work is not what is measured
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
			},
		}}
	}},
}

func meta(ns, prefix string, i int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%04d", prefix, i)}
}

// BenchmarkVeleroMigration5000 reports, per mode, the time of `velero backup create` on the
// source until Completed plus `velero restore create` on the target until Completed, and the
// ratio with ferry / without. Both Velero servers are restarted between modes; the modes
// alternate within each iteration so drift hits both alike. The BSL sync between backup and
// restore (Velero's fixed one-minute period) is not measured.
func BenchmarkVeleroMigration5000(b *testing.B) {
	// Quiet start: benchmark output is cut after a few lines, keep them for the results.
	s := stack.StartT(b, stack.Options{OpenShift: true, Logf: func(string, ...any) {}})
	ctx := context.Background()
	ns := stack.UniqueName("bench")
	if err := s.Source.CreateNamespace(ctx, ns, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	total := populate(b, ctx, s.Source, ns)
	b.Logf("created %d objects in namespace %s in %s", total, ns, time.Since(start).Round(time.Millisecond))

	modes := []struct {
		name    string
		plugins []string // nil: ferry's
	}{{"without-ferry", []string{}}, {"with-ferry", nil}}
	type result struct {
		backup, restore time.Duration
		items           int
	}
	results := map[string]*result{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range modes {
			b.StopTimer()
			if err := s.RestartVelero(ctx, m.plugins); err != nil {
				b.Fatalf("restarting Velero %s: %v", m.name, err)
			}
			name := stack.UniqueName(m.name)
			b.StartTimer()
			t0 := time.Now()
			backup, err := s.Source.CreateBackup(ctx, name, "--include-namespaces", ns, "--snapshot-volumes=false")
			if err != nil {
				b.Fatal(err)
			}
			backupTime := time.Since(t0)
			b.StopTimer()
			if _, err := s.Target.WaitBackupSynced(ctx, name); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t1 := time.Now()
			restore, err := s.Target.CreateRestore(ctx, name, "--from-backup", name, "--namespace-mappings", ns+":"+name)
			if err != nil {
				b.Fatal(err)
			}
			restoreTime := time.Since(t1)
			b.StopTimer()
			r := results[m.name]
			if r == nil {
				r = &result{}
				results[m.name] = r
			}
			r.backup += backupTime
			r.restore += restoreTime
			r.items = backup.Status.Progress.ItemsBackedUp
			b.Logf("%-13s backup %6.1fs (%d items)  restore %6.1fs (%d items)", m.name,
				backupTime.Seconds(), backup.Status.Progress.ItemsBackedUp, restoreTime.Seconds(), restore.Status.Progress.ItemsRestored)
		}
	}
	wo, wi := results["without-ferry"], results["with-ferry"]
	without, with := wo.backup+wo.restore, wi.backup+wi.restore
	ratio := with.Seconds() / without.Seconds()
	b.ReportMetric(without.Seconds()/float64(b.N), "s/op-without-ferry")
	b.ReportMetric(with.Seconds()/float64(b.N), "s/op-with-ferry")
	b.ReportMetric(ratio, "ratio")
	verdict := "met"
	if ratio > 1.2 {
		verdict = "NOT met"
	}
	b.Logf("Velero backup+restore of %d objects: without ferry %.1fs, with ferry %.1fs per run: ratio %.2f (target ≤ 1.2 %s)",
		total, without.Seconds()/float64(b.N), with.Seconds()/float64(b.N), ratio, verdict)
	// The table hack/bench.sh collects (Markdown on stdout).
	n := float64(b.N)
	fmt.Printf("\n### Velero backup + restore of a %d-object namespace (mean of %d run(s))\n\n", total, b.N)
	fmt.Printf("| Velero | items backed up | backup | restore | total |\n|---|---:|---:|---:|---:|\n")
	for _, m := range []struct {
		name string
		r    *result
	}{{"without ferry", wo}, {"with ferry's plugins", wi}} {
		fmt.Printf("| %s | %d | %.1f s | %.1f s | %.1f s |\n", m.name, m.r.items,
			m.r.backup.Seconds()/n, m.r.restore.Seconds()/n, (m.r.backup+m.r.restore).Seconds()/n)
	}
	fmt.Printf("\nRatio with/without: **%.2f** (target ≤ 1.2, %s).\n", ratio, verdict)
}

// populate creates the objects concurrently and returns how many.
func populate(b *testing.B, ctx context.Context, c *stack.Cluster, ns string) int {
	jobs := make(chan crclient.Object)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range jobs {
				if err := c.Client.Create(ctx, o); err != nil {
					select {
					case errs <- fmt.Errorf("creating %T %s: %w", o, o.GetName(), err):
					default:
					}
				}
			}
		}()
	}
	total := 0
	for _, k := range objects {
		for i := range k.count {
			jobs <- k.make(ns, i)
			total++
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return total
}
