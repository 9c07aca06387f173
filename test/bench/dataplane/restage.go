package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// restage: for ferry and plain rsync -a in turn, a full copy of the small files onto disk, a
// second run with nothing changed, a third after 1 % of the files changed; their times as shares
// of the full copy's, and ferry's share over rsync's (the goal: at most a third).
func (b *bench) restage(ctx context.Context, dataset string) error {
	work, want, err := b.changeableCopy(ctx, dataset, "restage")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	files := want[0]
	rounds, note := b.rounds(0)
	tools := []tool{b.ferryTool(defaultStreams), {name: "rsync -a (daemon, loopback TCP)", chart: "rsync", run: plainRsync(b.cfg.work)}}
	type figures struct {
		full, unchanged, changed     []time.Duration
		unchangedShare, changedShare []float64
	}
	figs := make([]figures, len(tools))
	var unchangedVs, changedVs []float64 // ferry's share / rsync's, per round
	changedFiles := 0
	for round := 0; round < rounds; round++ {
		for i, tl := range tools {
			dst, f, err := b.copyOnce(ctx, tl, "", b.disk, work, want)
			if err != nil {
				return err
			}
			u, err := b.timed(ctx, tl, "", work, dst)
			if err != nil {
				return err
			}
			changed, err := changeFiles(work, 100, round*len(tools)+i)
			if err != nil {
				return err
			}
			c, err := b.timed(ctx, tl, "", work, dst)
			if err != nil {
				return err
			}
			if err := sameFiles(work, dst, changed); err != nil {
				return fmt.Errorf("%s: %w", tl.name, err)
			}
			changedFiles = len(changed)
			fg := &figs[i]
			fg.full, fg.unchanged, fg.changed = append(fg.full, f), append(fg.unchanged, u), append(fg.changed, c)
			fg.unchangedShare = append(fg.unchangedShare, u.Seconds()/f.Seconds())
			fg.changedShare = append(fg.changedShare, c.Seconds()/f.Seconds())
			logf("  %-40s round %d: full %s, unchanged %s, %d files changed %s", tl.name, round+1,
				f.Round(time.Millisecond), u.Round(time.Millisecond), len(changed), c.Round(time.Millisecond))
		}
		unchangedVs = append(unchangedVs, figs[0].unchangedShare[round]/figs[1].unchangedShare[round])
		changedVs = append(changedVs, figs[0].changedShare[round]/figs[1].changedShare[round])
	}
	var rows [][]string
	panels := []panel{
		{Title: fmt.Sprintf("Re-stage, %s files on disk: unchanged", count(files))},
		{Title: fmt.Sprintf("Re-stage, %s files on disk: 1 %% changed", count(files))},
	}
	for i, tl := range tools {
		fg := figs[i]
		rows = append(rows, []string{tl.name, seconds(median(fg.full)), seconds(median(fg.unchanged)),
			percent(medianFloat(fg.unchangedShare)), seconds(median(fg.changed)), percent(medianFloat(fg.changedShare))})
		panels[0].Bars = append(panels[0].Bars, bar{Tool: tl.chart, Seconds: median(fg.unchanged).Seconds()})
		panels[1].Bars = append(panels[1].Bars, bar{Tool: tl.chart, Seconds: median(fg.changed).Seconds()})
	}
	rows = append(rows, []string{"ferry's share ÷ rsync's share (goal: ≤ 0.33)", "", "", fmt.Sprintf("%.2f", medianFloat(unchangedVs)),
		"", fmt.Sprintf("%.2f", medianFloat(changedVs))})
	b.publish("restage", fmt.Sprintf("**Re-stage of %s × 4 KiB files on disk**: a full copy, a second run with nothing changed, "+
		"a third after 1 %% of the files (%s) were rewritten; each tool's time as a share of its own full copy, and ferry's share "+
		"over rsync's, the median of the rounds' (%s):\n\n%s", count(files), count(changedFiles), note,
		mdTable([]string{"tool", "full copy", "unchanged", "of full", "1 % of files changed", "of full"}, rows)), panels...)
	return nil
}

// restageMillion: one full ferry copy of many tiny files onto disk, then rounds of 0.1 % of the
// files changed and ferry's re-stage, against what any re-stage has to do at the least: read
// the metadata of both trees. Two `find -printf` (one per side, at once, as the two ends of a
// transfer would) print what rsync compares: path, size, mtime, mode, owner, group. The goal:
// ferry within 2× the scans.
func (b *bench) restageMillion(ctx context.Context, dataset string) error {
	files, size, err := treeSize(dataset)
	if err != nil {
		return err
	}
	want := [2]int64{files, size}
	tl := b.ferryTool(defaultStreams)
	// The dataset is on the machine's disk (a million files are too many for a tmpfs here) and
	// changes in place: its file count and sizes stay, which is all the memory part reads.
	dst, full, err := b.copyOnce(ctx, tl, "", b.disk, dataset, want)
	if err != nil {
		return err
	}
	logf("  %s files: full copy %s", count(files), full.Round(time.Millisecond))
	rounds, note := b.rounds(3)
	var restage, scans, ratios []float64
	changedFiles := 0
	for round := 0; round < rounds; round++ {
		changed, err := changeFiles(dataset, 1000, round)
		if err != nil {
			return err
		}
		r, err := b.timed(ctx, tl, "", dataset, dst)
		if err != nil {
			return err
		}
		if err := sameFiles(dataset, dst, changed); err != nil {
			return err
		}
		s, err := scanBoth(ctx, dataset, dst)
		if err != nil {
			return err
		}
		changedFiles = len(changed)
		restage, scans, ratios = append(restage, r.Seconds()), append(scans, s.Seconds()), append(ratios, r.Seconds()/s.Seconds())
		logf("  round %d: %d files changed, re-stage %s, both scans %s", round+1, len(changed), r.Round(time.Millisecond), s.Round(time.Millisecond))
	}
	b.publish("restage1m", fmt.Sprintf("**Re-stage of %s × 100-byte files on disk** after 0.1 %% of them (%s) changed, "+
		"against two `find DIR -printf '%%p %%s %%T@ %%m %%U %%G\\n' > /dev/null` started together, one of the source and one of the target "+
		"(the time until both end): the least any re-stage reads. One full copy first (%s), then %s; the ratio is the median of the rounds':\n\n%s",
		count(files), count(changedFiles), seconds(full), note, mdTable([]string{"", "time"}, [][]string{
			{fmt.Sprintf("ferry send/serve, %d streams: re-stage", defaultStreams), fmt.Sprintf("%.2f s", medianFloat(restage))},
			{"find of the source and of the target, at once", fmt.Sprintf("%.2f s", medianFloat(scans))},
			{"ferry ÷ the scans (goal: ≤ 2)", fmt.Sprintf("%.2f", medianFloat(ratios))},
		})))
	return nil
}

// scanBoth runs a find over each directory at once and returns the time until both ended.
func scanBoth(ctx context.Context, dirs ...string) (time.Duration, error) {
	var cmds []*exec.Cmd
	start := time.Now()
	for _, d := range dirs {
		// Stdout left nil: /dev/null.
		c := command(ctx, "find", d, "-printf", `%p %s %T@ %m %U %G\n`)
		if err := c.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			return 0, fmt.Errorf("%s: %w", c.String(), err)
		}
	}
	return time.Since(start), nil
}

func percent(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }

// changeableCopy loads dataset into the memory source and copies it to a directory of its own
// (suffix), for a part that changes files: the dataset stays as generated. It returns the
// copy and its regular files and bytes; the caller removes it.
func (b *bench) changeableCopy(ctx context.Context, dataset, suffix string) (string, [2]int64, error) {
	src, err := b.source.load(ctx, dataset, "2g")
	if err != nil {
		return "", [2]int64{}, err
	}
	work := src + "-" + suffix
	if err := runQuiet(ctx, nil, "", "cp", "-a", src, work); err != nil {
		return "", [2]int64{}, err
	}
	files, size, err := treeSize(work)
	if err != nil {
		os.RemoveAll(work)
		return "", [2]int64{}, err
	}
	return work, [2]int64{files, size}, nil
}
