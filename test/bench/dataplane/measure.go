package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	sets    datasets
	report  *report
	certs   string
	disk    *target
	memory  *target
	source  *memorySource
}

// defaultStreams is send's default (dataplane.DefaultStreams): the ferry the chart shows.
const defaultStreams = 4

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func (b *bench) setup(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the bench mounts fresh filesystems for every copy: run it as root")
	}
	// 12 GiB holds the large files and the million tiny ones (ext4's inodes at -i 8192).
	b.disk = newTarget(b.cfg.work, "disk", fmt.Sprintf("%dM", max(1024, int(12*1024*b.sets.scale))))
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

// tools are the ways to copy a tree that compare measures.
func (b *bench) tools() []tool {
	tools := []tool{
		{name: "tar | tar (loopback TCP)", chart: "tar", run: tarPipe},
		{name: "rsync -a (daemon, loopback TCP)", chart: "rsync", run: plainRsync(b.cfg.work)},
		{name: "rsync -aHS via stunnel, 1 stream", chart: "stunnel", run: stunnelRsync(b.cfg.work, b.certs)},
	}
	for _, n := range b.streams {
		tools = append(tools, b.ferryTool(n))
	}
	return append(tools, tool{name: "restic backup + restore", chart: "restic", run: restic(b.cfg.work), once: true})
}

func (b *bench) ferryTool(streams int) tool {
	t := tool{name: fmt.Sprintf("ferry send/serve, %d streams", streams), run: ferry(b.ferry, b.certs, streams)}
	if streams == defaultStreams {
		t.name += " (default)"
		t.chart = "ferry"
	}
	return t
}

// rounds is how many times a part measures each figure: -repeat, or fewer for the slowest
// parts (capped) so that a whole run stays under about 40 minutes. note says so in the heading.
func (b *bench) rounds(capped int) (n int, note string) {
	n = b.cfg.repeat
	if capped > 0 && n > capped {
		return capped, fmt.Sprintf("%d rounds, not %d, so the whole run stays under 40 minutes; medians", capped, n)
	}
	if n == 1 {
		return 1, "1 round"
	}
	return n, fmt.Sprintf("%d rounds, medians", n)
}

// timed runs tl from src into dst (on the CPUs of cpus, "" for all) and returns the time until
// the data is on disk: the tool's own time plus a sync of the target filesystem.
func (b *bench) timed(ctx context.Context, tl tool, cpus, src, dst string) (time.Duration, error) {
	run := ctx
	if cpus != "" {
		run = pinned(ctx, cpus)
	}
	start := time.Now()
	if err := tl.run(run, src, dst); err != nil {
		return 0, fmt.Errorf("%s: %w", tl.name, err)
	}
	if err := runQuiet(ctx, nil, "", "sync", "-f", dst); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// copyOnce copies src into a fresh filesystem of t with tool, checks that every file arrived,
// and returns the time until the data is on disk. It leaves the copy in place (for a re-stage).
func (b *bench) copyOnce(ctx context.Context, tl tool, cpus string, t *target, src string, want [2]int64) (string, time.Duration, error) {
	dst, err := t.fresh(ctx)
	if err != nil {
		return "", 0, err
	}
	took, err := b.timed(ctx, tl, cpus, src, dst)
	if err != nil {
		return "", 0, err
	}
	files, size, err := treeSize(dst)
	if err != nil {
		return "", 0, err
	}
	if files != want[0] || size != want[1] {
		return "", 0, fmt.Errorf("%s copied %d files / %d bytes, the source has %d / %d", tl.name, files, size, want[0], want[1])
	}
	return dst, took, nil
}

// compare measures every tool on one dataset, on disk and in memory, and publishes the table.
// The rounds interleave the tools, and each speed is the median of the rounds' ratios, so a
// busy moment of this shared machine weighs on every tool alike.
func (b *bench) compare(ctx context.Context, part, title, dataset, memSize string, capped int) error {
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
	rounds, note := b.rounds(capped)
	tools := b.tools()
	targets := []*target{b.disk, b.memory}
	times := make([][][]time.Duration, len(tools)) // tool, target, round
	for i := range times {
		times[i] = make([][]time.Duration, len(targets))
	}
	for round := 0; round < rounds; round++ {
		for i, tl := range tools {
			for k, t := range targets {
				if tl.once && (round > 0 || t != b.disk) {
					continue
				}
				_, d, err := b.copyOnce(ctx, tl, "", t, src, want)
				if err != nil {
					return err
				}
				times[i][k] = append(times[i][k], d)
				logf("  %-40s %-6s round %d: %s", tl.name, t.name, round+1, d.Round(time.Millisecond))
			}
		}
	}
	var rows [][]string
	panels := []panel{{Title: title + ", on disk (ext4)"}, {Title: title + ", in memory (tmpfs)"}}
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
			if tl.chart != "" {
				panels[k].Bars = append(panels[k].Bars, bar{Tool: tl.chart, Seconds: median(times[i][k]).Seconds()})
			}
		}
		rows = append(rows, row)
	}
	b.publish(part, fmt.Sprintf("**%s** (%s; speed = tar's time / the tool's, the median of the rounds' ratios):\n\n%s",
		title, note, mdTable([]string{"tool", "disk (ext4)", "speed", "memory (tmpfs)", "speed"}, rows)), panels...)
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
	err = ferry(b.ferry, b.certs, defaultStreams)(ctx, dataset, dst)
	took := time.Since(start)
	stop()
	if err != nil {
		return err
	}
	b.publish("memory", fmt.Sprintf("**Peak memory** (RSS, sampled every 100 ms) copying %s files of 100 bytes with %d streams (%s):\n\n%s",
		count(files), defaultStreams, seconds(took), mdTable([]string{"side", "ferry-datamover", "whole process tree (with rsync, stunnel)"}, [][]string{
			{"send", mib(sampler.peakSelf["send"]), mib(sampler.peakTree["send"])},
			{"serve", mib(sampler.peakSelf["serve"]), mib(sampler.peakTree["serve"])},
		})))
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

// count writes n with thousands separators: 1,000,000.
func count[T int | int64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// human writes a whole number of MiB or GiB: "1 GiB", "10 MiB".
func human(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// mdTable writes a Markdown table (it reads as text on stdout, and goes into the docs as is).
func mdTable(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`) // "tar | tar"
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}
