package dataplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/units"
)

// ReportType names the kinds of line `send --progress=json` prints.
type ReportType string

const (
	// ReportProgress: the transfer is moving (at most about once a second).
	ReportProgress ReportType = "progress"
	// ReportRetry: an attempt failed with a transient error; another follows after a backoff.
	ReportRetry ReportType = "retry"
	// ReportDone: the target holds the source's tree; `send` exits 0.
	ReportDone ReportType = "done"
	// ReportError: the transfer failed for good; `send` exits with ExitCode.
	ReportError ReportType = "error"
)

// Report is one line of `send --progress=json`: a JSON object on stdout. The sidecar reads the
// client pod's log with ParseReport. Fields that do not apply to a type are left out.
type Report struct {
	Type ReportType `json:"type"`
	Time time.Time  `json:"time"`
	// Attempt counts from 1 (progress, retry, error).
	Attempt int `json:"attempt,omitempty"`

	// BytesDone is the size of the files copied so far in this attempt (a changed file counts
	// in full, even when rsync sent only its changed blocks); BytesTotal is the size of all
	// regular files in the source volume.
	BytesDone  int64 `json:"bytesDone,omitempty"`
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// Percent is the share of the volume already checked or copied: it reaches 100 when every
	// file is known to be equal on the target, also when most were already there.
	Percent float64 `json:"percent,omitempty"`
	// RateBytesPerSecond is the recent copy rate of file data.
	RateBytesPerSecond int64 `json:"rateBytesPerSecond,omitempty"`
	// Files is the number of regular files copied so far (progress) or present in the
	// volume (done); FilesTotal is the number of regular files in the volume.
	Files      int64 `json:"files,omitempty"`
	FilesTotal int64 `json:"filesTotal,omitempty"`
	// ElapsedSeconds is the time since `send` started (all attempts).
	ElapsedSeconds float64 `json:"elapsedSeconds,omitempty"`

	// BytesSent is what went over the wire (rsync's own count, after its delta encoding).
	BytesSent int64 `json:"bytesSent,omitempty"`
	// FilesTransferred is the number of regular files the last attempt had to copy: after an
	// unchanged volume it is 0.
	FilesTransferred int64 `json:"filesTransferred,omitempty"`
	// Warnings counts files that vanished while they were copied (rsync exit code 24), and
	// the device files skipped (SkippedCount).
	Warnings int `json:"warnings,omitempty"`
	// Skipped lists device files left out because the server cannot create them (it is not
	// root, or lacks CAP_MKNOD), at most 100 of them; SkippedCount counts them all (done).
	Skipped      []string `json:"skipped,omitempty"`
	SkippedCount int64    `json:"skippedCount,omitempty"`
	// Attempts is the number of attempts the transfer needed (done).
	Attempts int `json:"attempts,omitempty"`

	// VerifyPercent is the share of the verify pass done, above 0 only while it runs (progress;
	// the copy's fields then stay at their totals).
	VerifyPercent float64 `json:"verifyPercent,omitempty"`
	// Verified is the verify pass's result (send --verify): clean in a done report, with the
	// differences in the retry or error report of an attempt that found some.
	Verified *Verification `json:"verified,omitempty"`

	// Error is the reason of a retry or of the final failure.
	Error string `json:"error,omitempty"`
	// BackoffSeconds is the wait before the next attempt (retry).
	BackoffSeconds float64 `json:"backoffSeconds,omitempty"`
	// ExitCode is what `send` exits with (error).
	ExitCode int `json:"exitCode,omitempty"`
}

// ErrNotReport is returned by ParseReport for a line that is not a report, e.g. a diagnostic
// from stderr interleaved in a pod log.
var ErrNotReport = errors.New("not a ferry transfer report")

// ParseReport reads one line of `send --progress=json` output. Lines of other output (the pod
// log mixes stdout and stderr) yield ErrNotReport.
func ParseReport(line []byte) (Report, error) {
	var e Report
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return e, ErrNotReport
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrNotReport, err)
	}
	switch e.Type {
	case ReportProgress, ReportRetry, ReportDone, ReportError:
		return e, nil
	}
	return Report{}, fmt.Errorf("%w: type %q", ErrNotReport, e.Type)
}

// Marshal renders the report as one JSON line (with the trailing newline).
func (e Report) Marshal() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		// Only plain fields: cannot fail.
		panic(err)
	}
	return append(b, '\n')
}

// Human renders the report for people (`send --progress=human`).
func (e Report) Human() string {
	switch e.Type {
	case ReportProgress:
		if e.VerifyPercent > 0 {
			return fmt.Sprintf("verifying: %5.1f%%  of %d files, %s on each side  %s  (attempt %d)",
				e.VerifyPercent, e.FilesTotal, units.Bytes(e.BytesTotal), formatElapsed(e.ElapsedSeconds), e.Attempt)
		}
		return fmt.Sprintf("%5.1f%%  %s of %s  %s/s  %d of %d files  %s  (attempt %d)",
			e.Percent, units.Bytes(e.BytesDone), units.Bytes(e.BytesTotal), units.Bytes(e.RateBytesPerSecond),
			e.Files, e.FilesTotal, formatElapsed(e.ElapsedSeconds), e.Attempt)
	case ReportRetry:
		return fmt.Sprintf("attempt %d failed: %s; retrying in %.0fs", e.Attempt, e.Error, e.BackoffSeconds)
	case ReportDone:
		s := fmt.Sprintf("done: %d files (%s), %d copied, %s sent, %d attempt(s), %s",
			e.Files, units.Bytes(e.BytesTotal), e.FilesTransferred, units.Bytes(e.BytesSent), e.Attempts, formatElapsed(e.ElapsedSeconds))
		if vanished := e.Warnings - int(e.SkippedCount); vanished > 0 {
			s += fmt.Sprintf(", %d warning(s): files vanished while they were copied", vanished)
		}
		if e.SkippedCount > 0 {
			s += fmt.Sprintf(", %d device file(s) skipped: the server cannot create them", e.SkippedCount)
		}
		if v := e.Verified; v != nil {
			s += fmt.Sprintf("; verified: %d files, %s compared, no difference", v.Files, units.Bytes(v.Bytes))
			if v.Repaired > 0 {
				s += fmt.Sprintf(" (%d found by an earlier attempt, copied again by content)", v.Repaired)
			}
		}
		return s
	case ReportError:
		return fmt.Sprintf("failed after %d attempt(s): %s", e.Attempt, e.Error)
	}
	return string(e.Type)
}

func formatElapsed(s float64) string {
	return (time.Duration(s*float64(time.Second)) / time.Second * time.Second).String()
}

// rsyncProgress is one `--info=progress2` line of an rsync process: totals for that process.
type rsyncProgress struct {
	Bytes       int64 // file data handled so far (whole size of each transferred file)
	Percent     int
	Transferred int64 // files transferred so far (xfr#)
	ToCheck     int64 // entries of the file list still to check (to-chk=X/…)
	Entries     int64 // entries in the file list (…/Y)
	HasCounts   bool  // the line carried the (xfr#…, to-chk=…) part
}

// parseProgress2 parses one --info=progress2 line of rsync, e.g.
//
//	409600000 100%   26.38MB/s    0:00:14 (xfr#100000, to-chk=0/100101)
//
// (the byte count may carry thousands separators when rsync's output is human-readable); ok is
// false for anything else (stats lines, file names, errors). It rejects percentages above 100
// and counts that do not add up, so a file name that happens to look like a progress line is
// not taken for one. rsync prints one such line per file: this runs 100,000 times for 100,000
// small files, so it is written out by hand rather than as a regular expression.
func parseProgress2(line string) (p rsyncProgress, ok bool) {
	f := strings.Fields(line)
	if len(f) != 4 && len(f) != 6 {
		return p, false
	}
	if f[0] == "" || f[0][0] < '0' || f[0][0] > '9' || strings.Trim(f[0], "0123456789,.'") != "" {
		return p, false
	}
	var err error
	if p.Bytes, err = strconv.ParseInt(strings.Map(digitsOnly, f[0]), 10, 64); err != nil {
		return rsyncProgress{}, false
	}
	pct, found := strings.CutSuffix(f[1], "%")
	if !found || len(pct) == 0 || len(pct) > 3 || !allDigits(pct) {
		return rsyncProgress{}, false
	}
	if p.Percent, _ = strconv.Atoi(pct); p.Percent > 100 {
		return rsyncProgress{}, false
	}
	if len(f[2]) < 3 || !strings.HasSuffix(f[2], "/s") || !isElapsed(f[3]) {
		return rsyncProgress{}, false
	}
	if len(f) == 6 {
		xfr, found := strings.CutPrefix(f[4], "(xfr#")
		if !found {
			return rsyncProgress{}, false
		}
		xfr, found = strings.CutSuffix(xfr, ",")
		chk, found2 := strings.CutSuffix(f[5], ")")
		if !found || !found2 || !allDigits(xfr) {
			return rsyncProgress{}, false
		}
		if c, ok := strings.CutPrefix(chk, "to-chk="); ok {
			chk = c
		} else if c, ok := strings.CutPrefix(chk, "ir-chk="); ok {
			chk = c
		} else {
			return rsyncProgress{}, false
		}
		left, total, found := strings.Cut(chk, "/")
		if !found || !allDigits(left) || !allDigits(total) {
			return rsyncProgress{}, false
		}
		var e1, e2, e3 error
		p.Transferred, e1 = strconv.ParseInt(xfr, 10, 64)
		p.ToCheck, e2 = strconv.ParseInt(left, 10, 64)
		p.Entries, e3 = strconv.ParseInt(total, 10, 64)
		if e1 != nil || e2 != nil || e3 != nil || p.ToCheck > p.Entries {
			return rsyncProgress{}, false
		}
		p.HasCounts = true
	}
	return p, true
}

func digitsOnly(r rune) rune {
	if r >= '0' && r <= '9' {
		return r
	}
	return -1
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isElapsed matches rsync's H:MM:SS.
func isElapsed(s string) bool {
	h, rest, ok := strings.Cut(s, ":")
	if !ok || !allDigits(h) || len(rest) != 5 || rest[2] != ':' {
		return false
	}
	return allDigits(rest[:2]) && allDigits(rest[3:])
}

// rsyncStats is rsync's --stats summary of one process.
type rsyncStats struct {
	Files            int64 // "Number of files" (all entries)
	RegularFiles     int64 // "(reg: N"
	Created          int64
	Deleted          int64
	FilesTransferred int64 // "Number of regular files transferred"
	TotalSize        int64 // "Total file size"
	TransferredSize  int64 // "Total transferred file size"
	LiteralData      int64
	MatchedData      int64
	BytesSent        int64 // "Total bytes sent" (on the wire)
	BytesReceived    int64
	seen             bool
}

var (
	statsLine    = regexp.MustCompile(`^(Number of files|Number of created files|Number of deleted files|Number of regular files transferred|Total file size|Total transferred file size|Literal data|Matched data|Total bytes sent|Total bytes received): (\d[\d,.']*)(?: bytes)?(.*)$`)
	statsRegular = regexp.MustCompile(`reg: (\d[\d,.']*)`)
)

// parseStatsLine folds one --stats line into s; it reports whether the line was one.
func (s *rsyncStats) parseStatsLine(line string) bool {
	m := statsLine.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return false
	}
	n, ok := parseCount(m[2])
	if !ok {
		return false
	}
	s.seen = true
	switch m[1] {
	case "Number of files":
		s.Files = n
		if r := statsRegular.FindStringSubmatch(m[3]); r != nil {
			s.RegularFiles, _ = parseCount(r[1])
		}
	case "Number of created files":
		s.Created = n
	case "Number of deleted files":
		s.Deleted = n
	case "Number of regular files transferred":
		s.FilesTransferred = n
	case "Total file size":
		s.TotalSize = n
	case "Total transferred file size":
		s.TransferredSize = n
	case "Literal data":
		s.LiteralData = n
	case "Matched data":
		s.MatchedData = n
	case "Total bytes sent":
		s.BytesSent = n
	case "Total bytes received":
		s.BytesReceived = n
	}
	return true
}

// add sums per-process statistics into a transfer's.
func (s *rsyncStats) add(o rsyncStats) {
	s.Files += o.Files
	s.RegularFiles += o.RegularFiles
	s.Created += o.Created
	s.Deleted += o.Deleted
	s.FilesTransferred += o.FilesTransferred
	s.TotalSize += o.TotalSize
	s.TransferredSize += o.TransferredSize
	s.LiteralData += o.LiteralData
	s.MatchedData += o.MatchedData
	s.BytesSent += o.BytesSent
	s.BytesReceived += o.BytesReceived
	s.seen = s.seen || o.seen
}

// parseCount reads a number that may carry thousands separators.
func parseCount(s string) (int64, bool) {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// scanLinesCR is a bufio.SplitFunc for rsync's output: progress updates end in '\r', everything
// else in '\n'. Empty lines are dropped.
func scanLinesCR(data []byte, atEOF bool) (advance int, token []byte, err error) {
	start := 0
	for start < len(data) && (data[start] == '\r' || data[start] == '\n') {
		start++
	}
	if i := bytes.IndexAny(data[start:], "\r\n"); i >= 0 {
		return start + i + 1, data[start : start+i], nil
	}
	if atEOF && start < len(data) {
		return len(data), data[start:], nil
	}
	return start, nil, nil
}

// progressTracker folds the progress lines of a transfer's rsync processes into reports.
type progressTracker struct {
	mu          sync.Mutex
	attempt     int
	start       time.Time
	jobs        []jobProgress
	totalWeight int64
	bytesTotal  int64
	filesTotal  int64
	samples     []rateSample // recent (time, bytes done), for the rate
}

type jobProgress struct {
	weight, bytes int64 // planned
	cur           rsyncProgress
	done          bool
	doneBytes     int64
	doneFiles     int64
}

type rateSample struct {
	at    time.Time
	bytes int64
}

// rateWindow is how far back the rate looks: long enough to smooth file boundaries, short
// enough to follow a changing link.
const rateWindow = 5 * time.Second

func newProgressTracker(plan *streamPlan, attempt int, start time.Time) *progressTracker {
	t := &progressTracker{attempt: attempt, start: start, bytesTotal: plan.Bytes, filesTotal: plan.Files}
	for _, j := range plan.Jobs {
		t.jobs = append(t.jobs, jobProgress{weight: j.Weight, bytes: j.Bytes})
		t.totalWeight += j.Weight
	}
	return t
}

func (t *progressTracker) update(job int, p rsyncProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jobs[job].cur = p
}

func (t *progressTracker) finish(job int, s rsyncStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := &t.jobs[job]
	j.done, j.doneBytes, j.doneFiles = true, s.TransferredSize, s.FilesTransferred
}

// report is the progress report at time now.
func (t *progressTracker) report(now time.Time) Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	var bytesDone, files int64
	var weighted float64
	for _, j := range t.jobs {
		if j.done {
			bytesDone += j.doneBytes
			files += j.doneFiles
			weighted += float64(j.weight)
			continue
		}
		bytesDone += j.cur.Bytes
		files += j.cur.Transferred
		// A job is as far as the more advanced of its data and its file list: a first copy
		// moves through the bytes, a re-run through the list of unchanged files.
		f := 0.0
		if j.bytes > 0 {
			f = float64(j.cur.Bytes) / float64(j.bytes)
		}
		if j.cur.HasCounts && j.cur.Entries > 0 {
			f = max(f, float64(j.cur.Entries-j.cur.ToCheck)/float64(j.cur.Entries))
		}
		weighted += float64(j.weight) * min(f, 1)
	}
	percent := 100.0
	if t.totalWeight > 0 {
		percent = 100 * weighted / float64(t.totalWeight)
	}
	t.samples = append(t.samples, rateSample{now, bytesDone})
	for len(t.samples) > 2 && now.Sub(t.samples[0].at) > rateWindow {
		t.samples = t.samples[1:]
	}
	var rate int64
	if first := t.samples[0]; now.Sub(first.at) > 0 && bytesDone >= first.bytes {
		rate = int64(float64(bytesDone-first.bytes) / now.Sub(first.at).Seconds())
	}
	return Report{
		Type:               ReportProgress,
		Time:               now.UTC(),
		Attempt:            t.attempt,
		BytesDone:          bytesDone,
		BytesTotal:         t.bytesTotal,
		Percent:            float64(int(percent*10)) / 10,
		RateBytesPerSecond: rate,
		Files:              files,
		FilesTotal:         t.filesTotal,
		ElapsedSeconds:     now.Sub(t.start).Round(time.Millisecond).Seconds(),
	}
}
