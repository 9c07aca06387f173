// Command dataplane benchmarks ferry's data plane (`ferry-datamover serve` + `send`, the built
// binary, as the transfer pods run it) against `tar | tar` through a loopback TCP connection,
// plain `rsync -a` to an rsync daemon, a single rsync through stunnel the way the existing
// migration tools run it, and restic backup + restore. Parts (-only picks some):
//
//   - large, one, small: 4 × 1 GiB files, one 1 GiB file, 100,000 × 4 KiB files, copied by
//     every tool onto disk and into memory;
//   - restage: ferry and rsync -a again over their copy of the small files, with nothing changed
//     and after 1 % of the files changed (restage.go);
//   - cores: the small files' full copy and re-stage on one core and on all (cores.go);
//   - block: a 1 GiB block device against dd through stunnel (block.go);
//   - restage1m: ferry's re-stage of 1,000,000 tiny files after 0.1 % changed, against a
//     metadata scan of both trees (restage.go);
//   - memory: the peak memory of send and serve copying those million files.
//
// Speed is reported as tar's time divided by the tool's (1.00 = as fast as tar). The tables go
// to stdout and into docs/benchmarks.md between each part's markers, and a bar chart into
// docs/benchmarks.svg (report.go, chart.go). `make bench` runs it through hack/bench.sh.
//
// Every copy goes into a fresh filesystem (filesystems.go) and ends with the data on disk: each
// tool's time includes a `sync -f` of the target after it exits (ferry's serve flushes the
// volume itself before send finishes; the extra sync then finds nothing to do). The "memory"
// columns repeat the comparison into a tmpfs: the tools' own cost, without a disk. It runs as
// root (it mounts filesystems).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// allParts are the parts in the order they run: the small files' parts together (one copy of
// them in a tmpfs), the million files' last (the memory part releases that tmpfs first).
var allParts = []string{"large", "one", "small", "restage", "cores", "block", "restage1m", "memory"}

func main() {
	defaultDocs := filepath.Join("docs", "benchmarks.md")
	if _, err := os.Stat(defaultDocs); err != nil {
		defaultDocs = "" // not run from the repository's root
	}
	var (
		work    = flag.String("work", "", "work directory for datasets and copies (default _output/bench-dataplane; needs ~12 GiB)")
		bin     = flag.String("bin", "", "ferry-datamover binary (default $FERRY_BIN_DIR/ferry-datamover)")
		repeat  = flag.Int("repeat", envInt("FERRY_BENCH_REPEAT", 5), "rounds per measurement; the median is reported (large, cores and restage1m do at most 3)")
		streams = flag.String("streams", "2,4", "stream counts of ferry to measure (send's default is 4)")
		only    = flag.String("only", os.Getenv("FERRY_BENCH_ONLY"), "comma-separated parts: "+strings.Join(allParts, ",")+" (default all)")
		million = flag.Int("rss-files", 1_000_000, "files of the restage1m and memory parts")
		scale   = flag.Float64("scale", 1, "multiplies the datasets' file counts and the big files' sizes, for a quick trial (e.g. 0.01)")
		docs    = flag.String("docs", defaultDocs, "Markdown file to write the tables into, between each part's markers (empty: stdout only; default empty with -scale)")
		svg     = flag.String("svg", "", "SVG bar chart to write (default: beside -docs, .svg for .md; empty with -docs empty)")
	)
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["docs"] && *scale != 1 {
		*docs = "" // a trial's figures go into the docs only when asked for by name
	}
	if !set["svg"] && *docs != "" {
		*svg = strings.TrimSuffix(*docs, ".md") + ".svg"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := config{work: *work, bin: *bin, repeat: *repeat, streams: *streams, only: *only, rssFiles: *million, scale: *scale, docs: *docs, svg: *svg}
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane bench:", err)
		os.Exit(1)
	}
}

type config struct {
	work, bin, streams, only string
	docs, svg                string
	repeat, rssFiles         int
	scale                    float64
}

func (c config) wants(part string) bool {
	return c.only == "" || strings.Contains(","+c.only+",", ","+part+",")
}

func run(ctx context.Context, c config) error {
	if c.work == "" {
		c.work = filepath.Join("_output", "bench-dataplane")
	}
	if c.bin == "" {
		dir := os.Getenv("FERRY_BIN_DIR")
		if dir == "" {
			dir = filepath.Join("_output", "bin")
		}
		c.bin = filepath.Join(dir, "ferry-datamover")
	}
	if c.repeat < 1 || c.scale <= 0 || c.scale > 1 {
		return fmt.Errorf("-repeat %d -scale %g: want at least 1 round and a scale in (0, 1]", c.repeat, c.scale)
	}
	var parts []string
	for _, p := range strings.Split(c.only, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(allParts, p) {
			return fmt.Errorf("-only: no part %q (the parts: %s)", p, strings.Join(allParts, ", "))
		}
	}
	for _, p := range allParts {
		if c.wants(p) {
			parts = append(parts, p)
		}
	}
	if c.docs != "" {
		if err := checkDocs(c.docs, parts); err != nil {
			return err
		}
	}
	var err error
	if c.work, err = filepath.Abs(c.work); err != nil {
		return err
	}
	if c.bin, err = filepath.Abs(c.bin); err != nil {
		return err
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("ferry-datamover binary: %w (run `make build` first)", err)
	}
	if err := checkTools(); err != nil {
		return err
	}
	var streamCounts []int
	for _, s := range strings.Split(c.streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-streams %q: want a comma-separated list of positive numbers", c.streams)
		}
		streamCounts = append(streamCounts, n)
	}
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	sets := datasets{work: c.work, scale: c.scale}
	b := &bench{cfg: c, ferry: c.bin, streams: streamCounts, sets: sets, report: newReport()}
	defer b.teardown()
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.report.printHeader()
	big := human(sets.bigFile())
	if c.wants("large") {
		src, err := sets.large(ctx)
		if err != nil {
			return err
		}
		if err := b.compare(ctx, "large", "4 × "+big+" files", src, "5g", 3); err != nil {
			return err
		}
	}
	if c.wants("one") {
		src, err := sets.one(ctx)
		if err != nil {
			return err
		}
		if err := b.compare(ctx, "one", "One "+big+" file", src, "2g", 0); err != nil {
			return err
		}
	}
	if c.wants("small") || c.wants("restage") || c.wants("cores") {
		src, err := sets.small(ctx)
		if err != nil {
			return err
		}
		title := count(sets.count(100_000)) + " × 4 KiB files"
		if c.wants("small") {
			if err := b.compare(ctx, "small", title, src, "2g", 0); err != nil {
				return err
			}
		}
		if c.wants("restage") {
			if err := b.restage(ctx, src); err != nil {
				return err
			}
		}
		if c.wants("cores") {
			if err := b.cores(ctx, src); err != nil {
				return err
			}
		}
	}
	if c.wants("block") {
		if err := b.blockCopies(ctx); err != nil {
			return err
		}
	}
	if c.wants("restage1m") || c.wants("memory") {
		// A million files do not fit a tmpfs here: these parts read them from the work directory.
		if err := b.source.release(ctx); err != nil {
			return err
		}
		src, err := sets.tiny(ctx, sets.count(c.rssFiles))
		if err != nil {
			return err
		}
		if c.wants("restage1m") {
			if err := b.restageMillion(ctx, src); err != nil {
				return err
			}
		}
		if c.wants("memory") {
			if err := b.memoryPeak(ctx, src); err != nil {
				return err
			}
		}
	}
	b.report.printFooter()
	chart := ""
	if c.svg != "" {
		if err := b.report.writeChart(c.svg); err != nil {
			return err
		}
		if _, err := os.Stat(c.svg); err == nil {
			chart = c.svg
		}
	}
	if c.docs != "" {
		if err := b.report.writeDocs(c.docs, chart); err != nil {
			return err
		}
		logf("wrote the tables into %s", c.docs)
	}
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
