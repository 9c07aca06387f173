package dataplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// A re-stage (the target holds an earlier pass) starts with a comparison instead of a copy:
// serve scans the target into a manifest as soon as it starts, send scans the source into
// another meanwhile, and one streaming pass over both (diffManifests) finds the entries that
// are new, changed or gone. rsync then gets exactly those paths (--files-from, no recursion;
// --delete-missing-args deletes the gone ones), where a plain re-run would have it list and
// compare every file of both sides again; a pass that finds nothing runs no rsync at all.
//
// The comparison is only as good as the fields it compares, so the cases where rsync decides
// by more than a manifest holds take the whole-volume plan instead (restagePlan.Fallback):
// hard links (a group must travel whole), ACLs and xattrs on either side, another filesystem
// mounted below the volume, directories without write permission when the server is not root
// (only a single ordered rsync can fill them), device files the server cannot create, and a
// large share of changes (parallel streams move them faster).

// Limits of a re-stage by list.
const (
	// restageMaxEntries bounds the list (and so the sender's memory): beyond it, or beyond a
	// quarter of the volume's entries, the whole-volume plan runs.
	restageMaxEntries = 100_000
	// restageMaxBytes: more changed data than this goes faster in parallel streams.
	restageMaxBytes = 1 << 30
)

// restagePlan is what a re-stage sends.
type restagePlan struct {
	// Entries are the paths rsync gets: new or changed on the source, or gone from it.
	Entries []string
	// Files and Bytes: the regular files among them and their size (what rsync may send).
	Files, Bytes int64
	Deleted      int
	Sparse       bool
	// Root: the volume root's own attributes differ (the root pass sets them).
	Root bool
	// The source volume's totals.
	SourceFiles, SourceBytes, SourceEntries int64
	// Fallback says why the whole-volume plan must run instead; empty when this plan will do.
	Fallback string
}

// diffOptions are what the server can set, so what is compared.
type diffOptions struct {
	Owners    bool // the server is root: owners are set, so compared
	RootAttrs bool // the server may set the root's attributes
	Devices   bool // the server can create device files
}

// diffManifests compares the source's manifest with the target's. An error means a manifest
// could not be read; a plan with Fallback set, that the comparison cannot decide.
func diffManifests(src, dst *manifestReader, o diffOptions) (*restagePlan, error) {
	p := &restagePlan{}
	fallback := func(why string) (*restagePlan, error) {
		p.Entries, p.Fallback = nil, why
		return p, nil
	}
	var s, t *manifestEntry
	next := func(r *manifestReader, e **manifestEntry, what string) error {
		var err error
		if *e, err = r.next(); err != nil {
			return fmt.Errorf("the %s's manifest: %w", what, err)
		}
		return nil
	}
	if err := next(src, &s, "source"); err != nil {
		return nil, err
	}
	if err := next(dst, &t, "target"); err != nil {
		return nil, err
	}
	if s == nil || t == nil || s.Path != "" || t.Path != "" {
		return nil, fmt.Errorf("a manifest does not start with the volume root")
	}
	if o.RootAttrs && !sameEntry(s, t, o.Owners) {
		p.Root = true
	}
	// skip is a target directory being replaced or deleted whole: its entries need nothing.
	skip := ""
	list := func(e *manifestEntry) {
		p.Entries = append(p.Entries, e.Path)
		if e.Kind == kindFile {
			p.Files++
			p.Bytes += e.Size
			p.Sparse = p.Sparse || e.Flags&flagSparse != 0
		}
	}
	check := func(e *manifestEntry, source bool) string {
		switch {
		case e.Flags&flagHardLinked != 0:
			return "hard links"
		case e.Flags&(flagACLs|flagXattrs) != 0:
			return "ACLs or extended attributes"
		case e.Flags&flagMount != 0:
			return "another filesystem is mounted below the volume"
		case source && e.Kind == kindDir && e.Mode&0o200 == 0 && !o.Owners:
			return "directories without write permission, and the server is not root"
		case source && (e.Kind == kindChar || e.Kind == kindBlock) && !o.Devices:
			return "device files the server cannot create"
		}
		return ""
	}
	for _, why := range []string{check(s, true), check(t, false)} {
		if why != "" {
			return fallback(why)
		}
	}
	if err := next(src, &s, "source"); err != nil {
		return nil, err
	}
	if err := next(dst, &t, "target"); err != nil {
		return nil, err
	}
	for s != nil || t != nil {
		if t != nil && skip != "" && strings.HasPrefix(t.Path, skip) {
			if err := next(dst, &t, "target"); err != nil {
				return nil, err
			}
			continue
		}
		if len(p.Entries) > restageMaxEntries || p.Bytes > restageMaxBytes {
			return fallback("a large part of the volume changed")
		}
		c := 0
		switch {
		case s == nil:
			c = 1
		case t == nil:
			c = -1
		default:
			c = cmpPath(s.Path, t.Path)
		}
		if c <= 0 {
			if why := check(s, true); why != "" {
				return fallback(why)
			}
			p.SourceEntries++
			if s.Kind == kindFile {
				p.SourceFiles++
				p.SourceBytes += s.Size
			}
		}
		if c >= 0 {
			if why := check(t, false); why != "" {
				return fallback(why)
			}
		}
		switch {
		case c < 0: // new on the source
			list(s)
		case c > 0: // gone from the source: its whole subtree goes with it
			p.Entries = append(p.Entries, t.Path)
			p.Deleted++
			if t.Kind == kindDir {
				skip = t.Path + "/"
			}
		case !sameEntry(s, t, o.Owners):
			list(s)
			if t.Kind == kindDir && s.Kind != kindDir {
				skip = t.Path + "/" // replaced whole (--force)
			}
		}
		if c <= 0 {
			if err := next(src, &s, "source"); err != nil {
				return nil, err
			}
		}
		if c >= 0 {
			if err := next(dst, &t, "target"); err != nil {
				return nil, err
			}
		}
	}
	if int64(len(p.Entries)) > p.SourceEntries/4+1000 {
		return fallback("a large part of the volume changed")
	}
	return p, nil
}

// sameEntry: rsync (-lptgoD, --modify-window=-1) would leave t as it is for s. Owners count
// only where the server sets them.
func sameEntry(s, t *manifestEntry, owners bool) bool {
	if s.Kind != t.Kind || s.Mode != t.Mode {
		return false
	}
	if owners && (s.UID != t.UID || s.GID != t.GID) {
		return false
	}
	sameTime := s.Sec == t.Sec && s.Nsec == t.Nsec
	switch s.Kind {
	case kindFile:
		return s.Size == t.Size && sameTime
	case kindLink:
		return s.Link == t.Link && sameTime
	case kindChar, kindBlock:
		return s.Rdev == t.Rdev && sameTime
	default:
		return sameTime
	}
}

// sourceScan is the source's manifest being written while send waits for the server.
type sourceScan struct {
	file   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// scanSource starts writing the source's manifest into the work directory.
func (s *sender) scanSource(ctx context.Context, attempt int) *sourceScan {
	ctx, cancel := context.WithCancel(ctx)
	sc := &sourceScan{file: filepath.Join(s.work, fmt.Sprintf("source-%d.%s", attempt, manifestFile)), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sc.done)
		start := time.Now()
		_, _, sc.err = writeManifest(ctx, s.src, sc.file, scanOptions{Xattrs: s.local.ACLs || s.local.Xattrs})
		s.log.WithFields(logrus.Fields{"attempt": attempt, "seconds": time.Since(start).Seconds()}).Debug("scanned the source")
	}()
	return sc
}

// stop ends the scan (if still running) and removes its manifest.
func (sc *sourceScan) stop() {
	sc.cancel()
	<-sc.done
	os.Remove(sc.file)
}

// compareVolumes compares the target's manifest (fetched with the server's capabilities: ""
// when there was none) with the source's, once that is written. A fallback reason (with a nil
// plan) means the whole-volume plan runs; an error, that the attempt failed.
func (s *sender) compareVolumes(ctx context.Context, server capabilities, target string, scan *sourceScan, log logrus.FieldLogger) (*restagePlan, string, error) {
	start := time.Now()
	if target == "" {
		// The server's control module answers only once its scan ended (or after scanWait).
		if server.Manifest != nil && !*server.Manifest {
			return nil, "the server could not scan the target", nil
		}
		return nil, "the server has no manifest of the target (still scanning, or an older version)", nil
	}
	<-scan.done
	if scan.err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", notRetryable{fmt.Errorf("scanning the source: %w", scan.err)}
	}
	log.WithField("seconds", time.Since(start).Seconds()).Debug("both volumes scanned")
	sf, err := os.Open(scan.file)
	if err != nil {
		return nil, "", err
	}
	defer sf.Close()
	tf, err := os.Open(target)
	if err != nil {
		return nil, "", err
	}
	defer tf.Close()
	sr, err := newManifestReader(sf)
	if err != nil {
		return nil, "", fmt.Errorf("the source's manifest: %w", err)
	}
	tr, err := newManifestReader(tf)
	if err != nil {
		return nil, fmt.Sprintf("the server's manifest: %v", err), nil
	}
	p, err := diffManifests(sr, tr, diffOptions{Owners: server.Root, RootAttrs: server.RootAttrs, Devices: server.Devices})
	if err != nil {
		return nil, err.Error(), nil
	}
	if p.Fallback != "" {
		return nil, p.Fallback, nil
	}
	return p, "", nil
}

// sendChanges runs a re-stage by list: one rsync of the plan's entries (none when nothing
// changed), the root pass when the root's attributes differ, then the completion notice.
func (s *sender) sendChanges(ctx context.Context, attempt int, server capabilities, p *restagePlan, log logrus.FieldLogger) (Report, error) {
	opts := rsyncOptions{Compress: s.o.Compress, Timeout: s.o.Timeout, BwLimitKBps: s.o.BwLimitKBps}
	log.WithFields(logrus.Fields{
		"files": p.SourceFiles, "bytes": p.SourceBytes, "changed": len(p.Entries) - p.Deleted, "deleted": p.Deleted,
		"changedBytes": p.Bytes, "root": p.Root,
	}).Info("sending the differences")
	var stats rsyncStats
	vanished := 0
	if len(p.Entries) > 0 {
		plan := &streamPlan{Streams: 1, Bytes: p.SourceBytes, Files: p.SourceFiles, Entries: p.SourceEntries, Jobs: []*streamJob{{
			Entries: p.Entries, Exact: true, Sparse: p.Sparse, Bytes: p.Bytes, Files: p.Files,
			Weight: p.Bytes + int64(len(p.Entries))*entryCost,
		}}}
		tracker := newProgressTracker(plan, attempt, s.start)
		stopReport := s.reportProgress(tracker)
		var err error
		stats, vanished, err = s.runJobs(ctx, plan, opts, tracker, attempt)
		stopReport()
		if err != nil {
			return Report{}, err
		}
	}
	if p.Root {
		rootStats, v, err := s.runRsync(ctx, opts.rootArgs(s.src, server.RootAttrs), log.WithField("pass", "root"), nil)
		if err != nil {
			return Report{}, err
		}
		stats.add(rootStats)
		vanished += v
	}
	done := Report{
		Type: ReportDone, Attempt: attempt,
		BytesTotal: p.SourceBytes, Files: p.SourceFiles, FilesTotal: p.SourceFiles,
		BytesSent: stats.BytesSent, FilesTransferred: stats.FilesTransferred, Warnings: vanished,
	}
	return s.complete(ctx, attempt, opts, server, done, stats, log)
}
