package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"
)

// cores repeats the small files' full copy onto disk and their re-stage after 1 % changed for
// tar, plain rsync and ferry, once with every process of the tool on CPU 0 (`taskset -c 0`) and
// once on all the machine's CPUs: how each tool gains from more cores (ferry's streams are
// separate rsync processes; one rsync is one sender and one receiver; tar is two processes).
func (b *bench) cores(ctx context.Context, dataset string) error {
	work, want, err := b.changeableCopy(ctx, dataset, "cores")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	all := runtime.NumCPU()
	cpuSets := []string{"0", ""} // "": no taskset
	tools := []tool{
		{name: "tar | tar (loopback TCP)", run: tarPipe},
		{name: "rsync -a (daemon, loopback TCP)", run: plainRsync(b.cfg.work)},
		b.ferryTool(defaultStreams),
	}
	restages := []bool{false, true, true} // tar has no re-stage: it would copy everything again
	rounds, note := b.rounds(3)
	// tool, cpu set, round
	full := make([][][]time.Duration, len(tools))
	restage := make([][][]time.Duration, len(tools))
	for i := range tools {
		full[i], restage[i] = make([][]time.Duration, len(cpuSets)), make([][]time.Duration, len(cpuSets))
	}
	seed := 0
	for round := 0; round < rounds; round++ {
		for i, tl := range tools {
			for k, cpus := range cpuSets {
				dst, f, err := b.copyOnce(ctx, tl, cpus, b.disk, work, want)
				if err != nil {
					return err
				}
				full[i][k] = append(full[i][k], f)
				msg := fmt.Sprintf("full %s", f.Round(time.Millisecond))
				if restages[i] {
					seed++
					changed, err := changeFiles(work, 100, 1000+seed)
					if err != nil {
						return err
					}
					r, err := b.timed(ctx, tl, cpus, work, dst)
					if err != nil {
						return err
					}
					if err := sameFiles(work, dst, changed); err != nil {
						return fmt.Errorf("%s: %w", tl.name, err)
					}
					restage[i][k] = append(restage[i][k], r)
					msg += fmt.Sprintf(", 1 %% changed %s", r.Round(time.Millisecond))
				}
				logf("  %-40s cpus %-3s round %d: %s", tl.name, cpusLabel(cpus, all), round+1, msg)
			}
		}
	}
	cells := func(ds [][]time.Duration) []string {
		if len(ds[0]) == 0 {
			return []string{"-", "-", "-"}
		}
		var gains []float64
		for r := range ds[0] {
			gains = append(gains, ds[0][r].Seconds()/ds[1][r].Seconds())
		}
		return []string{seconds(median(ds[0])), seconds(median(ds[1])), fmt.Sprintf("%.2f×", medianFloat(gains))}
	}
	var rows [][]string
	for i, tl := range tools {
		rows = append(rows, append(append([]string{tl.name}, cells(full[i])...), cells(restage[i])...))
	}
	many := fmt.Sprintf("%d cores", all)
	b.publish("cores", fmt.Sprintf("**Cores: %s × 4 KiB files on disk**, each tool's whole process tree on one core (`taskset -c 0`) "+
		"and on all %d cores (the kernel's own work, TCP, the loop device and ext4's writeback, is not pinned); a full copy, then a "+
		"re-stage after 1 %% of the files changed (tar has none: it would copy everything again); gain = the 1-core time ÷ the %s time, "+
		"the median of the rounds' (%s):\n\n%s", count(want[0]), all, many, note,
		mdTable([]string{"tool", "full copy, 1 core", many, "gain", "1 % changed, 1 core", many, "gain"}, rows)))
	return nil
}

func cpusLabel(cpus string, all int) string {
	if cpus == "" {
		return fmt.Sprintf("0-%d", all-1)
	}
	return cpus
}
