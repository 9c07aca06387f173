package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// The verify pass (send --verify): after the copy and the root pass, a second walk of the whole
// volume in which rsync compares every regular file by content (--checksum: the client reads
// every file of the source, the server every file of the target) and changes nothing
// (--dry-run), listing every entry with how it differs (-ii). It uses the copy's options, so
// what the copy keeps (modes, times, owners where the server may set them, ACLs, xattrs,
// symlink targets, devices where the server may create them) is compared too, and a file the
// target has and the source does not is listed as a deletion. The copy decides by size and
// mtime, which cannot see a target file that changed without changing either (bit rot, a
// write that kept the mtime): the verify pass can.
//
// Hard links are compared by content only: rsync's dry run does not tell a target link that
// was split into two equal files from an intact one.

// MaxListedMismatches is how many differences a Verification names.
const MaxListedMismatches = 20

// ExitVerifyFailed is send's exit status when the verify pass found differences that a copy
// comparing contents did not remove (rsync's own codes end at 35).
const ExitVerifyFailed = 65

// Verification is the result of a verify pass.
type Verification struct {
	// Files is the number of regular files compared; Bytes their size, which each side read
	// in full (hard-linked names count once each).
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
	// Mismatches counts the entries that differ: content, type, size, a missing or extra
	// entry, a symlink's target, or an attribute the copy keeps.
	Mismatches int64 `json:"mismatches"`
	// First names the first MaxListedMismatches of them.
	First []Mismatch `json:"first,omitempty"`
	// Repaired counts the differences an earlier attempt's verify pass found, which this
	// attempt's copy (comparing contents) removed (done reports).
	Repaired int64 `json:"repaired,omitempty"`
}

// Mismatch is one entry the target has differently.
type Mismatch struct {
	// Path is relative to the volume, as rsync prints it (unprintable bytes as \#ooo);
	// directories end in "/".
	Path string `json:"path"`
	// Diff says how it differs, e.g. "content", "missing on the target", "not in the source",
	// "symlink target", "mtime, mode".
	Diff string `json:"diff"`
}

func (m Mismatch) String() string { return m.Path + " (" + m.Diff + ")" }

// Paths lists the named mismatches' paths.
func (v *Verification) Paths() []string {
	out := make([]string, len(v.First))
	for i, m := range v.First {
		out[i] = m.Path
	}
	return out
}

// Summary names the first n mismatches with how each differs, and how many more there are.
func (v *Verification) Summary(n int) string {
	var parts []string
	for _, m := range v.First[:min(n, len(v.First))] {
		parts = append(parts, m.String())
	}
	s := strings.Join(parts, ", ")
	if more := v.Mismatches - int64(len(parts)); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// VerifyError is a verify pass that found differences.
type VerifyError struct {
	Result Verification
	// ContentCopy: the copy before it compared contents, so another attempt would copy the
	// same and find the same: the source changed during the transfer (an application still
	// writing), or the target does not keep what was written.
	ContentCopy bool
}

func (e *VerifyError) Error() string {
	msg := fmt.Sprintf("verification failed: %d difference(s) between source and target (%d files, %d bytes compared): %s",
		e.Result.Mismatches, e.Result.Files, e.Result.Bytes, e.Result.Summary(5))
	if e.ContentCopy {
		return msg + "; the copy compared contents, so the source changed during the transfer or the target does not keep what was written"
	}
	return msg + "; the next attempt copies by content"
}

// ExitCode makes send exit with ExitVerifyFailed.
func (e *VerifyError) ExitCode() int { return ExitVerifyFailed }

// verified returns the Verification an error carries (nil for other errors).
func verified(err error) *Verification {
	var v *VerifyError
	if errors.As(err, &v) {
		r := v.Result
		return &r
	}
	return nil
}

// verify runs the verify pass after attempt's copy (copied: its done report, whose totals the
// progress reports repeat). Differences make a *VerifyError, and later attempts copy by
// content.
func (s *sender) verify(ctx context.Context, attempt int, copyOpts rsyncOptions, rootAttrs bool, copied Report) (Verification, error) {
	log := s.log.WithFields(logrus.Fields{"attempt": attempt, "pass": "verify"})
	start := time.Now()
	// A walk of its own, of the whole source: whatever the copy left out as unchanged is
	// compared too.
	plan, err := planStreams(s.src, planOptions{Streams: s.o.Streams, UnitWeight: s.o.planUnitWeight})
	if err != nil {
		return Verification{}, notRetryable{err}
	}
	opts := copyOpts
	opts.Verify, opts.Checksum, opts.Inplace = true, false, false
	log.WithFields(logrus.Fields{"files": plan.Files, "bytes": plan.Bytes, "jobs": len(plan.Jobs)}).Info("verifying: comparing every file by content")
	var (
		res    verifyResult
		logged atomic.Int64
	)
	found := func(m Mismatch) {
		if logged.Add(1) <= 100 {
			log.Warnf("differs on the target: %s", m)
		}
	}
	tracker := newVerifyTracker(plan, attempt, s.start, copied)
	stopReport := s.reportProgress(tracker)
	err = forEachJob(ctx, plan, func(ctx context.Context, stream, i int, j *streamJob) error {
		args, err := s.writeJobFiles(fmt.Sprintf("a%d-verify%d", attempt, i), j, opts)
		if err != nil {
			return err
		}
		_, _, err = s.runRsyncWith(ctx, args, log.WithField("stream", stream), rsyncHooks{
			started: func(pid int) { tracker.started(i, pid) },
			line: func(line string) bool {
				it, ok := parseItemized(line)
				if !ok {
					return false
				}
				tracker.listed(i, it)
				if m, ok := res.add(it, false, rootAttrs); ok {
					found(m)
				}
				return true
			},
		})
		tracker.finish(i)
		return err
	})
	if err == nil {
		// The top level's extra entries, and the root's own attributes where the copy sets them.
		_, _, err = s.runRsyncWith(ctx, opts.rootArgs(s.src, rootAttrs), log.WithField("stream", "root"), rsyncHooks{
			line: func(line string) bool {
				it, ok := parseItemized(line)
				if ok {
					if m, ok := res.add(it, true, rootAttrs); ok {
						found(m)
					}
				}
				return ok
			},
		})
	}
	stopReport()
	if err != nil {
		return Verification{}, err
	}
	v := res.result()
	log.WithFields(logrus.Fields{"files": v.Files, "bytes": v.Bytes, "mismatches": v.Mismatches,
		"seconds": time.Since(start).Seconds()}).Info("verify pass done")
	if v.Mismatches > 0 {
		s.contentCopy, s.repaired = true, v.Mismatches
		return v, &VerifyError{Result: v, ContentCopy: copyOpts.Checksum}
	}
	v.Repaired = s.repaired
	return v, nil
}

// itemized is one line of the verify pass's output (verifyOutFormat: "%i %l %n").
type itemized struct {
	code string // rsync's itemize string, "YXcstpoguax", or "*deleting"
	size int64
	name string
}

// parseItemized reads one line of verifyOutFormat; ok is false for anything else.
func parseItemized(line string) (it itemized, ok bool) {
	// The itemize string is 11 characters (padded with blanks), then " SIZE NAME".
	if len(line) < 15 || line[11] != ' ' {
		return it, false
	}
	it.code = strings.TrimRight(line[:11], " ")
	switch {
	case it.code == "*deleting":
	case len(it.code) >= 2 && strings.IndexByte("<>ch.", it.code[0]) >= 0 && strings.IndexByte("fdLDS", it.code[1]) >= 0:
	default:
		return it, false
	}
	size, name, found := strings.Cut(line[12:], " ")
	if !found || name == "" || !allDigits(size) {
		return itemized{}, false
	}
	it.size, _ = strconv.ParseInt(size, 10, 64)
	it.name = name
	return it, true
}

// regular: the line is about a regular file of the source.
func (it itemized) regular() bool { return len(it.code) >= 2 && it.code[1] == 'f' && it.code[0] != '*' }

// diff says how the entry differs on the target, "" when it does not.
func (it itemized) diff() string {
	if it.code == "*deleting" {
		return "not in the source"
	}
	code := it.code + strings.Repeat(" ", 11-len(it.code))
	attrs := code[2:]
	if strings.Contains(attrs, "+") {
		return "missing on the target"
	}
	var what []string
	add := func(pos int, name string) {
		if attrs[pos] != '.' && attrs[pos] != ' ' {
			what = append(what, name)
		}
	}
	switch code[1] {
	case 'f':
		add(0, "content")
	case 'L':
		add(0, "symlink target")
	default:
		add(0, "changed")
	}
	add(1, "size")
	add(2, "mtime")
	add(3, "mode")
	add(4, "owner")
	add(5, "group")
	add(7, "ACL")
	add(8, "xattrs")
	if len(what) > 0 {
		if what[0] == "size" {
			what[0] = "content (size)"
		}
		return strings.Join(what, ", ")
	}
	switch code[0] {
	case '<', '>':
		// Data would move although no attribute differs: the content.
		return "content"
	case 'c':
		// Created on the target: an entry of another type (a file where the source has a
		// directory, a device where it has a FIFO).
		return "type"
	}
	return ""
}

// verifyResult gathers a verify pass's lines from its rsync processes.
type verifyResult struct {
	mu sync.Mutex
	v  Verification
	// dirs: directories found different. A directory is listed by the job that owns its
	// entries and again, as an implied parent, by jobs of its subdirectories.
	dirs map[string]bool
}

// add counts one line of the pass; it returns the mismatch it found, if any. root: a line of
// the root pass, which counts no files (the streams list them) and reports only deletions at
// the top level and, when the server may set them, the root's own attributes.
func (r *verifyResult) add(it itemized, root, rootAttrs bool) (Mismatch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !root && it.regular() {
		r.v.Files++
		r.v.Bytes += it.size
	}
	if root && it.code != "*deleting" && (it.name != "./" || !rootAttrs) {
		return Mismatch{}, false
	}
	d := it.diff()
	if d == "" {
		return Mismatch{}, false
	}
	if strings.HasSuffix(it.name, "/") {
		if r.dirs[it.name] {
			return Mismatch{}, false
		}
		if r.dirs == nil {
			r.dirs = map[string]bool{}
		}
		r.dirs[it.name] = true
	}
	m := Mismatch{Path: it.name, Diff: d}
	r.v.Mismatches++
	if len(r.v.First) < MaxListedMismatches {
		r.v.First = append(r.v.First, m)
	}
	return m, true
}

func (r *verifyResult) result() Verification {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.v
	v.First = append([]Mismatch(nil), r.v.First...)
	sort.Slice(v.First, func(i, j int) bool { return v.First[i].Path < v.First[j].Path })
	return v
}

// verifyTracker turns a verify pass into progress: the share of the files' bytes the client
// has read (rsync checksums the whole source before it lists anything: its read count, from
// /proc, is the only sign of it) and of the entries the server has compared (listed).
type verifyTracker struct {
	mu      sync.Mutex
	attempt int
	start   time.Time
	bytes   int64 // the copy's totals, repeated in each report
	files   int64
	jobs    []verifyJob
	total   int64
}

type verifyJob struct {
	bytes, weight int64 // planned: the files' bytes; bytes plus entryCost per entry
	pid           int   // the running rsync, 0 when none
	read          int64 // bytes the client read (rchar)
	checked       int64 // weight of the entries listed
	done          bool
}

func newVerifyTracker(plan *streamPlan, attempt int, start time.Time, copied Report) *verifyTracker {
	t := &verifyTracker{attempt: attempt, start: start, bytes: copied.BytesTotal, files: copied.Files}
	for _, j := range plan.Jobs {
		t.jobs = append(t.jobs, verifyJob{bytes: j.Bytes, weight: j.Weight})
		t.total += j.Bytes + j.Weight
	}
	return t
}

func (t *verifyTracker) started(job, pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jobs[job].pid = pid
}

func (t *verifyTracker) listed(job int, it itemized) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := &t.jobs[job]
	w := int64(entryCost)
	if it.regular() {
		w += it.size
	}
	j.checked = min(j.checked+w, j.weight)
}

func (t *verifyTracker) finish(job int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jobs[job].done, t.jobs[job].pid = true, 0
}

// report is the progress report at time now: the copy's totals, and the verify pass's share.
func (t *verifyTracker) report(now time.Time) Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	var done int64
	for i := range t.jobs {
		j := &t.jobs[i]
		if j.done {
			done += j.bytes + j.weight
			continue
		}
		if j.pid > 0 {
			if n := readChars(j.pid); n > j.read {
				j.read = n
			}
		}
		done += min(j.read, j.bytes) + j.checked
	}
	percent := 100.0
	if t.total > 0 {
		percent = min(99.9, 100*float64(done)/float64(t.total))
	}
	return Report{
		Type:       ReportProgress,
		Time:       now.UTC(),
		Attempt:    t.attempt,
		BytesDone:  t.bytes,
		BytesTotal: t.bytes,
		Percent:    100,
		Files:      t.files,
		FilesTotal: t.files,
		// Above 0 from the start: it tells the verify pass's reports from the copy's.
		VerifyPercent:  max(float64(int(percent*10))/10, 0.1),
		ElapsedSeconds: now.Sub(t.start).Round(time.Millisecond).Seconds(),
	}
}

// readChars is how many bytes process pid has read (rchar in /proc/PID/io), -1 when unknown.
func readChars(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("rchar: ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
