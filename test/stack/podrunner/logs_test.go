package podrunner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeLog writes a log file in the runner's format with one line per second from base.
func writeLog(t *testing.T, base time.Time, contents ...string) string {
	t.Helper()
	var b strings.Builder
	for i, c := range contents {
		stream := "stdout"
		if i%2 == 1 {
			stream = "stderr"
		}
		b.WriteString(base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano) + " " + stream + " F " + c + "\n")
	}
	p := filepath.Join(t.TempDir(), "c-0.log")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

func TestStreamLog(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	path := writeLog(t, base, "one", "two", "three with  spaces", "four")
	since := base.Add(2 * time.Second)
	tests := []struct {
		name string
		opts logOptions
		want string
	}{
		{"all", logOptions{}, "one\ntwo\nthree with  spaces\nfour\n"},
		{"tail", logOptions{tailLines: ptrInt64(2)}, "three with  spaces\nfour\n"},
		{"tail 0", logOptions{tailLines: ptrInt64(0)}, ""},
		{"tail more than there is", logOptions{tailLines: ptrInt64(10)}, "one\ntwo\nthree with  spaces\nfour\n"},
		{"since", logOptions{since: &since}, "three with  spaces\nfour\n"},
		{"since and tail", logOptions{since: &since, tailLines: ptrInt64(1)}, "four\n"},
		{"timestamps", logOptions{tailLines: ptrInt64(1), timestamps: true}, base.Add(3*time.Second).Format(time.RFC3339Nano) + " four\n"},
		{"limit bytes", logOptions{limitBytes: ptrInt64(6)}, "one\ntw"},
	}
	done := make(chan struct{})
	close(done)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, follow := range []bool{false, true} {
				var b bytes.Buffer
				opts := tt.opts
				opts.follow = follow
				require.NoError(t, streamLog(context.Background(), path, done, &logOutput{w: &b, opts: opts}))
				assert.Equal(t, tt.want, b.String(), "follow=%v", follow)
			}
		})
	}
}

// A followed log goes on with what the container writes until the container ends.
func TestStreamLogFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-0.log")
	lw, err := newLogWriter(path)
	require.NoError(t, err)
	stdout, stderr, err := lw.pipes()
	require.NoError(t, err)
	done := make(chan struct{})
	var out bytes.Buffer
	result := make(chan error, 1)
	go func() {
		result <- streamLog(context.Background(), path, done, &logOutput{w: &out, opts: logOptions{follow: true}})
	}()

	_, _ = stdout.WriteString("first\n")
	_, _ = stderr.WriteString("second\npartial")
	stdout.Close()
	stderr.Close()
	lw.close()
	close(done)
	require.NoError(t, <-result)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.ElementsMatch(t, []string{"first", "second", "partial"}, lines, "a line without newline is kept when the stream ends")
}

func TestParseLogLine(t *testing.T) {
	l, err := parseLogLine("2026-01-02T03:04:05.5Z stderr F a b  c")
	require.NoError(t, err)
	assert.Equal(t, "stderr", l.stream)
	assert.Equal(t, "a b  c", l.content)
	assert.Equal(t, 500*time.Millisecond, time.Duration(l.ts.Nanosecond()))
	for _, bad := range []string{"", "nonsense", "yesterday stdout F x"} {
		_, err := parseLogLine(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestLastLogLines(t *testing.T) {
	path := writeLog(t, time.Now(), "a", "b", "c")
	assert.Equal(t, "b\nc\n", lastLogLines(path, 2, 100))
	assert.Equal(t, "c\n", lastLogLines(path, 3, 2), "capped to the last bytes")
}
