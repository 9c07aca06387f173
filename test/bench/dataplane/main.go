// Command dataplane benchmarks ferry's data plane (`ferry-datamover serve` + `send`, the built
// binary, as the transfer pods run it) against `tar | tar` through a loopback TCP connection,
// plain `rsync -a` to an rsync daemon, a single rsync through stunnel the way the existing
// migration tools run it, and restic backup + restore. Datasets: 4 × 1 GiB files and 100,000 ×
// 4 KiB files; then a re-stage after 1 % of the files changed, the peak memory of send and
// serve for a million files, and a 1 GiB block device (block.go) against dd through stunnel.
// Speed is reported as tar's time divided by the tool's (1.00 = as fast as tar). `make bench`
// runs it through hack/bench.sh.
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		work    = flag.String("work", "", "work directory for datasets and copies (default _output/bench-dataplane; needs ~12 GiB)")
		bin     = flag.String("bin", "", "ferry-datamover binary (default $FERRY_BIN_DIR/ferry-datamover)")
		repeat  = flag.Int("repeat", envInt("FERRY_BENCH_REPEAT", 3), "runs per measurement; the median is reported")
		streams = flag.String("streams", "2,4", "stream counts of ferry to measure (send's default is 4)")
		only    = flag.String("only", os.Getenv("FERRY_BENCH_ONLY"), "comma-separated parts: large,small,restage,memory,block (default all)")
		million = flag.Int("rss-files", 1_000_000, "files of the memory measurement")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, config{work: *work, bin: *bin, repeat: *repeat, streams: *streams, only: *only, rssFiles: *million}); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane bench:", err)
		os.Exit(1)
	}
}

type config struct {
	work, bin, streams, only string
	repeat, rssFiles         int
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
	b := &bench{cfg: c, ferry: c.bin, streams: streamCounts, started: time.Now()}
	defer b.teardown()
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.printHeader()
	if c.wants("large") {
		src, err := largeFiles(ctx, c.work)
		if err != nil {
			return err
		}
		if err := b.compare(ctx, "4 × 1 GiB files", src, "5g"); err != nil {
			return err
		}
	}
	if c.wants("small") || c.wants("restage") {
		src, err := smallFiles(ctx, c.work)
		if err != nil {
			return err
		}
		if c.wants("small") {
			if err := b.compare(ctx, "100,000 × 4 KiB files", src, "2g"); err != nil {
				return err
			}
		}
		if c.wants("restage") {
			if err := b.restage(ctx, src); err != nil {
				return err
			}
		}
	}
	if c.wants("block") {
		if err := b.blockCopies(ctx); err != nil {
			return err
		}
	}
	if c.wants("memory") {
		if err := b.source.release(ctx); err != nil {
			return err
		}
		src, err := tinyFiles(ctx, c.work, c.rssFiles)
		if err != nil {
			return err
		}
		if err := b.memoryPeak(ctx, src); err != nil {
			return err
		}
	}
	b.printFooter()
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
