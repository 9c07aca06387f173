package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type bench struct {
	cfg     config
	ferry   string
	streams []int
	started time.Time
	certs   string
	disk    *target
	memory  *target
	source  *memorySource
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func (b *bench) setup(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the bench mounts fresh filesystems for every copy: run it as root")
	}
	b.disk = newTarget(b.cfg.work, "disk", "12G")
	b.memory = newTarget(b.cfg.work, "memory", "6g")
	b.source = &memorySource{mount: filepath.Join(b.cfg.work, "mnt-source")}
	b.certs = filepath.Join(b.cfg.work, "certs")
	_ = os.RemoveAll(b.certs)
	return runQuiet(ctx, nil, "", b.ferry, "certs", "--out", b.certs)
}

func (b *bench) teardown() {
	ctx := context.Background()
	for _, t := range []*target{b.disk, b.memory} {
		if t != nil {
			if err := t.release(ctx); err != nil {
				logf("cleanup: %v", err)
			}
		}
	}
	if b.source != nil {
		if err := b.source.release(ctx); err != nil {
			logf("cleanup: %v", err)
		}
	}
}

// tool is one way to copy a tree; once means it is measured once, on disk only (restic: slow).
func (b *bench) tools() []tool {
	tools := []tool{
		{name: "tar | tar (loopback TCP)", run: tarPipe},
		{name: "rsync -a (daemon, loopback TCP)", run: plainRsync(b.cfg.work)},
		{name: "rsync -aHS via stunnel, 1 stream", run: stunnelRsync(b.cfg.work, b.certs)},
	}
	for _, n := range b.streams {
		tools = append(tools, tool{name: fmt.Sprintf("ferry send/serve, %d streams", n), run: ferry(b.ferry, b.certs, n)})
	}
	return append(tools, tool{name: "restic backup + restore", run: restic(b.cfg.work), once: true})
}

// copyOnce copies src into a fresh filesystem of t with tool and returns the time until the
// data is on disk (the tool's time plus a sync of the target filesystem).
func (b *bench) copyOnce(ctx context.Context, tl tool, t *target, src string, want [2]int64) (time.Duration, error) {
	dst, err := t.fresh(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := tl.run(ctx, src, dst); err != nil {
		return 0, fmt.Errorf("%s: %w", tl.name, err)
	}
	if err := runQuiet(ctx, nil, "", "sync", "-f", dst); err != nil {
		return 0, err
	}
	took := time.Since(start)
	files, size, err := treeSize(dst)
	if err != nil {
		return 0, err
	}
	if files != want[0] || size != want[1] {
		return 0, fmt.Errorf("%s copied %d files / %d bytes, the source has %d / %d", tl.name, files, size, want[0], want[1])
	}
	return took, nil
}

// compare measures every tool on one dataset, on disk and in memory, and prints the table.
// The rounds interleave the tools, and each speed is the median of the rounds' ratios, so a
// busy moment of this shared machine weighs on every tool alike.
func (b *bench) compare(ctx context.Context, title, dataset, memSize string) error {
	src, err := b.source.load(ctx, dataset, memSize)
	if err != nil {
		return err
	}
	files, size, err := treeSize(src)
	if err != nil {
		return err
	}
	want := [2]int64{files, size}
	logf("%s: %d files, %d bytes", title, files, size)
	tools := b.tools()
	targets := []*target{b.disk, b.memory}
	times := make([][][]time.Duration, len(tools)) // tool, target, round
	for i := range times {
		times[i] = make([][]time.Duration, len(targets))
	}
	for round := 0; round < b.cfg.repeat; round++ {
		for i, tl := range tools {
			for k, t := range targets {
				if tl.once && (round > 0 || t != b.disk) {
					continue
				}
				d, err := b.copyOnce(ctx, tl, t, src, want)
				if err != nil {
					return err
				}
				times[i][k] = append(times[i][k], d)
				logf("  %-36s %-6s round %d: %s", tl.name, t.name, round+1, d.Round(time.Millisecond))
			}
		}
	}
	var rows [][]string
	for i, tl := range tools {
		row := []string{tl.name}
		for k := range targets {
			if len(times[i][k]) == 0 {
				row = append(row, "-", "-")
				continue
			}
			var ratios []float64
			for r, d := range times[i][k] {
				if r < len(times[0][k]) {
					ratios = append(ratios, times[0][k][r].Seconds()/d.Seconds())
				}
			}
			row = append(row, seconds(median(times[i][k])), fmt.Sprintf("%.2f", medianFloat(ratios)))
		}
		rows = append(rows, row)
	}
	fmt.Printf("\n%s (%d rounds; speed = tar's time / the tool's, median of the rounds)\n\n", title, b.cfg.repeat)
	table([]string{"tool", "disk (ext4)", "speed", "memory (tmpfs)", "speed"}, rows)
	return nil
}

// restage: a full ferry copy of the small files onto disk, a second run with nothing changed,
// a third after 1 % of the files changed; their times as shares of the full copy's. Plain
// rsync -a for comparison.
func (b *bench) restage(ctx context.Context, dataset string) error {
	// The changes go into a copy, so the dataset stays as generated.
	src, err := b.source.load(ctx, dataset, "2g")
	if err != nil {
		return err
	}
	work := src + "-restage"
	if err := runQuiet(ctx, nil, "", "cp", "-a", src, work); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var rows [][]string
	for _, tl := range []tool{
		{name: "ferry send/serve, 4 streams", run: ferry(b.ferry, b.certs, 4)},
		{name: "rsync -a (daemon, loopback TCP)", run: plainRsync(b.cfg.work)},
	} {
		var full, unchanged, changed []time.Duration
		var fullRatio, unchangedRatio, changedRatio []float64
		for round := 0; round < b.cfg.repeat; round++ {
			dst, err := b.disk.fresh(ctx)
			if err != nil {
				return err
			}
			timed := func() (time.Duration, error) {
				start := time.Now()
				if err := tl.run(ctx, work, dst); err != nil {
					return 0, fmt.Errorf("%s: %w", tl.name, err)
				}
				if err := runQuiet(ctx, nil, "", "sync", "-f", dst); err != nil {
					return 0, err
				}
				return time.Since(start), nil
			}
			f, err := timed()
			if err != nil {
				return err
			}
			u, err := timed()
			if err != nil {
				return err
			}
			n, err := changeFiles(work, round)
			if err != nil {
				return err
			}
			c, err := timed()
			if err != nil {
				return err
			}
			full, unchanged, changed = append(full, f), append(unchanged, u), append(changed, c)
			fullRatio = append(fullRatio, 1)
			unchangedRatio = append(unchangedRatio, u.Seconds()/f.Seconds())
			changedRatio = append(changedRatio, c.Seconds()/f.Seconds())
			logf("  %-36s round %d: full %s, unchanged %s, %d files changed %s", tl.name, round+1,
				f.Round(time.Millisecond), u.Round(time.Millisecond), n, c.Round(time.Millisecond))
		}
		rows = append(rows, []string{tl.name, seconds(median(full)), seconds(median(unchanged)),
			fmt.Sprintf("%.1f %%", 100*medianFloat(unchangedRatio)), seconds(median(changed)), fmt.Sprintf("%.1f %%", 100*medianFloat(changedRatio))})
	}
	fmt.Printf("\nRe-stage of 100,000 × 4 KiB files on disk (%d rounds, medians)\n\n", b.cfg.repeat)
	table([]string{"tool", "full copy", "unchanged", "of full", "1 % of files changed", "of full"}, rows)
	return nil
}

// memoryPeak: peak resident memory of send's and serve's process trees (ferry-datamover,
// rsync, stunnel) copying many small files (from the disk: the dataset is too big for a tmpfs
// here; the time is not what is measured).
func (b *bench) memoryPeak(ctx context.Context, dataset string) error {
	dst, err := b.disk.fresh(ctx)
	if err != nil {
		return err
	}
	files, _, err := treeSize(dataset)
	if err != nil {
		return err
	}
	sampler := newRSSSampler(b.ferry)
	stop := sampler.start()
	start := time.Now()
	err = ferry(b.ferry, b.certs, 4)(ctx, dataset, dst)
	took := time.Since(start)
	stop()
	if err != nil {
		return err
	}
	fmt.Printf("\nPeak memory (RSS) copying %d files of 100 bytes with 4 streams (took %s)\n\n", files, took.Round(time.Second))
	table([]string{"side", "ferry-datamover", "whole process tree (with rsync, stunnel)"}, [][]string{
		{"send", mib(sampler.peakSelf["send"]), mib(sampler.peakTree["send"])},
		{"serve", mib(sampler.peakSelf["serve"]), mib(sampler.peakTree["serve"])},
	})
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianFloat(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// rssSampler polls /proc for the ferry-datamover send and serve processes and their
// descendants, keeping the peak sums.
type rssSampler struct {
	bin      string
	mu       sync.Mutex
	peakSelf map[string]int64
	peakTree map[string]int64
}

func newRSSSampler(bin string) *rssSampler {
	return &rssSampler{bin: bin, peakSelf: map[string]int64{}, peakTree: map[string]int64{}}
}

func (s *rssSampler) start() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (s *rssSampler) sample() {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	parent := map[int]int{}
	rss := map[int]int64{}
	roles := map[int]string{}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		j := bytes.LastIndexByte(stat, ')')
		if j < 0 {
			continue
		}
		f := strings.Fields(string(stat[j+1:]))
		if len(f) < 22 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		pages, _ := strconv.ParseInt(f[21], 10, 64) // rss, in pages
		rss[pid] = pages * int64(os.Getpagesize())
		if cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline"); err == nil {
			args := strings.Split(string(cmdline), "\x00")
			if len(args) > 1 && args[0] == s.bin && (args[1] == "send" || args[1] == "serve") {
				roles[pid] = args[1]
			}
		}
	}
	totals := map[string]int64{}
	for pid := range rss {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if role, ok := roles[p]; ok {
				totals[role] += rss[pid]
				break
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, role := range roles {
		s.peakSelf[role] = max(s.peakSelf[role], rss[pid])
	}
	for role, t := range totals {
		s.peakTree[role] = max(s.peakTree[role], t)
	}
}

func (b *bench) printHeader() {
	host, _ := os.Hostname()
	fmt.Printf("ferry data-plane benchmark — %s, %d CPUs (%s), %s\n", host, runtime.NumCPU(), cpuModel(), time.Now().Format(time.RFC3339))
	fmt.Printf("load average at start: %s\n", loadAvg())
}

func (b *bench) printFooter() {
	fmt.Printf("\nload average at the end: %s; the bench took %s\n", loadAvg(), time.Since(b.started).Round(time.Second))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			_, v, _ := strings.Cut(line, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// table prints a Markdown table (it reads as text, and pastes into the README).
func table(header []string, rows [][]string) {
	fmt.Println("| " + strings.Join(header, " | ") + " |")
	fmt.Println("|" + strings.Repeat("---|", len(header)))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`) // "tar | tar"
		}
		fmt.Println("| " + strings.Join(cells, " | ") + " |")
	}
}
