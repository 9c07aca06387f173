package dataplane

import (
	"bufio"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseProgress2(t *testing.T) {
	cases := []struct {
		line string
		want rsyncProgress
		ok   bool
	}{
		{line: "      409600000 100%   26.38MB/s    0:00:14 (xfr#100000, to-chk=0/100101)",
			want: rsyncProgress{Bytes: 409600000, Percent: 100, Transferred: 100000, ToCheck: 0, Entries: 100101, HasCounts: true}, ok: true},
		{line: "           4096   0%    0.00kB/s    0:00:00  ", want: rsyncProgress{Bytes: 4096}, ok: true},
		{line: "  1,234,567  45%   12.34MB/s    1:02:03 (xfr#12, ir-chk=100/2000)",
			want: rsyncProgress{Bytes: 1234567, Percent: 45, Transferred: 12, ToCheck: 100, Entries: 2000, HasCounts: true}, ok: true},
		{line: "52428800  20%  246.15MB/s    0:00:00 (xfr#1, to-chk=2/6)",
			want: rsyncProgress{Bytes: 52428800, Percent: 20, Transferred: 1, ToCheck: 2, Entries: 6, HasCounts: true}, ok: true},
		// Not progress: stats, messages, file names, impossible numbers.
		{line: "Number of files: 100101 (reg: 100000, dir: 101)"},
		{line: "sent 147 bytes  received 39 bytes  372.00 bytes/sec"},
		{line: "rsync: [sender] link_stat \"/x\" failed: No such file or directory (2)"},
		{line: "1 101% 1.00kB/s 0:00:00"},
		{line: "10 50% 1.00kB/s 0:00:00 (xfr#1, to-chk=7/6)"},
		{line: "99999999999999999999999 50% 1.00kB/s 0:00:00"},
		{line: ""},
		{line: "a 5% 1kB/s 0:00:00"},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			got, ok := parseProgress2(tc.line)
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, tc.want, got)
			}
		})
	}
}

func TestParseStats(t *testing.T) {
	out := `
Number of files: 100,101 (reg: 100,000, dir: 101)
Number of created files: 5 (reg: 5)
Number of deleted files: 3
Number of regular files transferred: 1000
Total file size: 409600000 bytes
Total transferred file size: 4096000 bytes
Literal data: 4096000 bytes
Matched data: 0 bytes
File list size: 1441754
File list generation time: 0.208 seconds
Total bytes sent: 5396694
Total bytes received: 19023

sent 5396694 bytes  received 19023 bytes  2941328.00 bytes/sec
total size is 409600000  speedup is 75.64
`
	var s rsyncStats
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if s.parseStatsLine(line) {
			n++
		}
	}
	assert.Equal(t, 10, n)
	assert.Equal(t, rsyncStats{
		Files: 100101, RegularFiles: 100000, Created: 5, Deleted: 3, FilesTransferred: 1000,
		TotalSize: 409600000, TransferredSize: 4096000, LiteralData: 4096000, BytesSent: 5396694, BytesReceived: 19023, seen: true,
	}, s)

	var sum rsyncStats
	sum.add(s)
	sum.add(s)
	assert.Equal(t, int64(2000), sum.FilesTransferred)
	assert.Equal(t, int64(2*5396694), sum.BytesSent)
}

func TestScanLinesCR(t *testing.T) {
	in := "  10 1% 1kB/s 0:00:00\r  20 2% 1kB/s 0:00:00\r\n\nNumber of files: 3\nlast"
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Split(scanLinesCR)
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	assert.Equal(t, []string{"  10 1% 1kB/s 0:00:00", "  20 2% 1kB/s 0:00:00", "Number of files: 3", "last"}, got)
}

func TestParseEvent(t *testing.T) {
	when := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		line    string
		want    Report
		wantErr bool
	}{
		{name: "progress", line: `{"type":"progress","time":"2026-11-21T10:00:00Z","attempt":2,"bytesDone":10,"bytesTotal":100,"percent":10,"rateBytesPerSecond":5,"files":1,"filesTotal":9,"elapsedSeconds":2.5}`,
			want: Report{Type: ReportProgress, Time: when, Attempt: 2, BytesDone: 10, BytesTotal: 100, Percent: 10, RateBytesPerSecond: 5, Files: 1, FilesTotal: 9, ElapsedSeconds: 2.5}},
		{name: "done with trailing blanks", line: `{"type":"done","time":"2026-11-21T10:00:00Z","bytesTotal":100,"bytesSent":7,"files":9,"filesTransferred":1,"warnings":1,"attempts":3}` + " \r",
			want: Report{Type: ReportDone, Time: when, BytesTotal: 100, BytesSent: 7, Files: 9, FilesTransferred: 1, Warnings: 1, Attempts: 3}},
		{name: "retry", line: `{"type":"retry","time":"2026-11-21T10:00:00Z","attempt":1,"error":"rsync exited with code 12","backoffSeconds":2}`,
			want: Report{Type: ReportRetry, Time: when, Attempt: 1, Error: "rsync exited with code 12", BackoffSeconds: 2}},
		{name: "error", line: `{"type":"error","time":"2026-11-21T10:00:00Z","attempt":8,"error":"boom","exitCode":23}`,
			want: Report{Type: ReportError, Time: when, Attempt: 8, Error: "boom", ExitCode: 23}},
		{name: "stderr diagnostic", line: `time="2026-11-21T10:00:00Z" level=info msg=sending`, wantErr: true},
		{name: "empty", line: "", wantErr: true},
		{name: "other JSON", line: `{"level":"info","msg":"x"}`, wantErr: true},
		{name: "unknown type", line: `{"type":"hello"}`, wantErr: true},
		{name: "truncated", line: `{"type":"progress","bytesDone":`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReport([]byte(tc.line))
			if tc.wantErr {
				assert.ErrorIs(t, err, ErrNotReport)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestEventRoundTrip(t *testing.T) {
	e := Report{Type: ReportDone, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), BytesTotal: 1 << 40, BytesSent: 12345, Files: 1e6, FilesTransferred: 3, Attempts: 2, ElapsedSeconds: 12.5}
	line := e.Marshal()
	assert.Equal(t, byte('\n'), line[len(line)-1], "one report per line")
	assert.NotContains(t, string(line[:len(line)-1]), "\n")
	got, err := ParseReport(line)
	require.NoError(t, err)
	assert.Equal(t, e, got)
	assert.NotContains(t, string(line), `"error"`, "fields that do not apply are left out")
}

func TestEventHuman(t *testing.T) {
	assert.Equal(t, " 50.0%  1.0 GiB of 2.0 GiB  100.0 MiB/s  5 of 10 files  1m3s  (attempt 1)",
		Report{Type: ReportProgress, Percent: 50, BytesDone: 1 << 30, BytesTotal: 2 << 30, RateBytesPerSecond: 100 << 20, Files: 5, FilesTotal: 10, ElapsedSeconds: 63.4, Attempt: 1}.Human())
	assert.Equal(t, "done: 10 files (2.0 KiB), 3 copied, 512 B sent, 1 attempt(s), 2s, 1 warning(s): files vanished while they were copied",
		Report{Type: ReportDone, Files: 10, BytesTotal: 2048, FilesTransferred: 3, BytesSent: 512, Attempts: 1, ElapsedSeconds: 2, Warnings: 1}.Human())
	assert.Equal(t, "done: 10 files (2.0 KiB), 3 copied, 512 B sent, 1 attempt(s), 2s, 1 warning(s): files vanished while they were copied, 2 device file(s) skipped: the server cannot create them",
		Report{Type: ReportDone, Files: 10, BytesTotal: 2048, FilesTransferred: 3, BytesSent: 512, Attempts: 1, ElapsedSeconds: 2, Warnings: 3,
			Skipped: []string{"dev/null", "dev/sda"}, SkippedCount: 2}.Human())
	assert.Equal(t, "attempt 2 failed: cut; retrying in 4s", Report{Type: ReportRetry, Attempt: 2, Error: "cut", BackoffSeconds: 4}.Human())
	assert.Equal(t, "verifying:  42.5%  of 10 files, 2.0 GiB on each side  1m3s  (attempt 1)",
		Report{Type: ReportProgress, Percent: 100, BytesDone: 2 << 30, BytesTotal: 2 << 30, Files: 10, FilesTotal: 10, VerifyPercent: 42.5, ElapsedSeconds: 63.4, Attempt: 1}.Human())
	assert.Equal(t, "done: 10 files (2.0 KiB), 0 copied, 512 B sent, 1 attempt(s), 2s; verified: 10 files, 2.0 KiB compared, no difference",
		Report{Type: ReportDone, Files: 10, BytesTotal: 2048, BytesSent: 512, Attempts: 1, ElapsedSeconds: 2, Verified: &Verification{Files: 10, Bytes: 2048}}.Human())
}

func TestProgressTracker(t *testing.T) {
	plan := &streamPlan{Bytes: 1000, Files: 10, Jobs: []*streamJob{
		{Weight: 600, Bytes: 600},
		{Weight: 400, Bytes: 400},
	}}
	start := time.Now()
	tr := newProgressTracker(plan, 2, start)
	e := tr.report(start)
	assert.Equal(t, ReportProgress, e.Type)
	assert.Equal(t, 2, e.Attempt)
	assert.Equal(t, 0.0, e.Percent)
	assert.Equal(t, int64(1000), e.BytesTotal)
	assert.Equal(t, int64(10), e.FilesTotal)

	// Job 0 half copied; job 1 found nearly everything unchanged (its file list is 3/4 checked).
	tr.update(0, rsyncProgress{Bytes: 300, Transferred: 2})
	tr.update(1, rsyncProgress{Bytes: 0, ToCheck: 1, Entries: 4, HasCounts: true})
	e = tr.report(start.Add(time.Second))
	assert.Equal(t, int64(300), e.BytesDone)
	assert.Equal(t, int64(2), e.Files)
	assert.Equal(t, 60.0, e.Percent) // 600×0.5 + 400×0.75 of 1000
	assert.Equal(t, int64(300), e.RateBytesPerSecond)

	tr.finish(0, rsyncStats{TransferredSize: 600, FilesTransferred: 5})
	tr.finish(1, rsyncStats{})
	e = tr.report(start.Add(2 * time.Second))
	assert.Equal(t, 100.0, e.Percent)
	assert.Equal(t, int64(600), e.BytesDone)
	assert.Equal(t, int64(5), e.Files)
}

// FuzzParseProgress2: the parser of rsync's output never panics, and what it accepts is
// consistent (a percentage of at most 100, counts that add up).
func FuzzParseProgress2(f *testing.F) {
	for _, s := range []string{
		"      409600000 100%   26.38MB/s    0:00:14 (xfr#100000, to-chk=0/100101)",
		"           4096   0%    0.00kB/s    0:00:00  ",
		"  1,234,567  45%   12.34MB/s    1:02:03 (xfr#12, ir-chk=100/2000)",
		"Number of files: 100101 (reg: 100000, dir: 101)",
		"Total bytes sent: 415,396,694",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if p, ok := parseProgress2(line); ok {
			if p.Percent < 0 || p.Percent > 100 || p.Bytes < 0 || p.ToCheck > p.Entries || p.ToCheck < 0 {
				t.Fatalf("inconsistent progress %+v from %q", p, line)
			}
		}
		var s rsyncStats
		s.parseStatsLine(line)
		if s.Files < 0 || s.BytesSent < 0 || s.FilesTransferred < 0 {
			t.Fatalf("negative stats %+v from %q", s, line)
		}
	})
}

// FuzzParseReport: any line from a pod log is either a report that survives a round trip or
// ErrNotReport; never a panic.
func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"type":"progress","attempt":1,"bytesDone":10,"bytesTotal":100,"percent":10}`))
	f.Add([]byte(`{"type":"done","files":3}`))
	f.Add([]byte(`time="x" level=info msg=y`))
	f.Add([]byte(`{"type":"error","error":"\u0000"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseReport(line)
		if err != nil {
			if !reflect.DeepEqual(e, Report{}) {
				t.Fatalf("error %v with a non-empty report", err)
			}
			return
		}
		again, err := ParseReport(e.Marshal())
		if err != nil {
			t.Fatalf("re-parsing %q: %v", e.Marshal(), err)
		}
		a, _ := json.Marshal(e)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("round trip changed the report: %s vs %s", a, b)
		}
	})
}
