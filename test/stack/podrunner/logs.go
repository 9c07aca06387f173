package podrunner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Container logs are stored as kubelet's CRI log files are: one line per output line,
//
//	<RFC3339Nano timestamp> <stdout|stderr> F <content>
//
// so timestamps, sinceTime and tailLines can be answered later.

// logWriter turns a container's stdout and stderr into one log file.
type logWriter struct {
	f       *os.File
	mu      sync.Mutex
	readers sync.WaitGroup
	once    sync.Once
}

func newLogWriter(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f}, nil
}

// pipes returns the write ends to hand to the process as stdout and stderr; lines read from
// them are written to the log until the process and its children close them.
func (l *logWriter) pipes() (stdout, stderr *os.File, err error) {
	var files []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, err
		}
		files = append(files, w)
		l.readers.Add(1)
		go l.copyLines(r, stream)
	}
	return files[0], files[1], nil
}

func (l *logWriter) copyLines(r *os.File, stream string) {
	defer l.readers.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			l.writeLine(stream, strings.TrimSuffix(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

func (l *logWriter) writeLine(stream, content string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, content)
}

// close waits for both streams to be drained, then closes the file.
func (l *logWriter) close() {
	l.once.Do(func() {
		l.readers.Wait()
		l.f.Close()
	})
}

// logLine is one parsed line of a log file.
type logLine struct {
	ts      time.Time
	stream  string
	content string
}

func parseLogLine(raw string) (logLine, error) {
	parts := strings.SplitN(raw, " ", 4)
	if len(parts) < 4 {
		return logLine{}, fmt.Errorf("malformed log line %q", raw)
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return logLine{}, fmt.Errorf("malformed log timestamp in %q: %w", raw, err)
	}
	return logLine{ts: ts, stream: parts[1], content: parts[3]}, nil
}

// logOptions are the pods/log options kubelet honours.
type logOptions struct {
	follow     bool
	timestamps bool
	tailLines  *int64
	since      *time.Time
	limitBytes *int64
}

// logOutput writes lines to w as `kubectl logs` shows them, minding limitBytes.
type logOutput struct {
	w       io.Writer
	flush   func()
	opts    logOptions
	written int64
}

var errLimitReached = errors.New("limitBytes reached")

func (o *logOutput) write(l logLine) error {
	if o.opts.since != nil && l.ts.Before(*o.opts.since) {
		return nil
	}
	var b bytes.Buffer
	if o.opts.timestamps {
		b.WriteString(l.ts.Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	b.WriteString(l.content)
	b.WriteByte('\n')
	data := b.Bytes()
	if o.opts.limitBytes != nil {
		left := *o.opts.limitBytes - o.written
		if left <= 0 {
			return errLimitReached
		}
		if int64(len(data)) > left {
			data = data[:left]
		}
	}
	n, err := o.w.Write(data)
	o.written += int64(n)
	if err != nil {
		return err
	}
	if o.opts.limitBytes != nil && o.written >= *o.opts.limitBytes {
		return errLimitReached
	}
	return nil
}

// streamLog writes a container instance's log to out: the tail first, then (follow) new lines
// until the instance has ended and its log is fully read, or ctx ends.
func streamLog(ctx context.Context, path string, done <-chan struct{}, out *logOutput) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var pending string // a line whose newline has not been written yet
	// readAvailable returns the complete lines available now.
	readAvailable := func() []logLine {
		var lines []logLine
		for {
			chunk, err := br.ReadString('\n')
			pending += chunk
			if err != nil {
				return lines
			}
			if l, perr := parseLogLine(strings.TrimSuffix(pending, "\n")); perr == nil {
				lines = append(lines, l)
			}
			pending = ""
		}
	}
	first := readAvailable()
	if out.opts.since != nil {
		kept := first[:0]
		for _, l := range first {
			if !l.ts.Before(*out.opts.since) {
				kept = append(kept, l)
			}
		}
		first = kept
	}
	if t := out.opts.tailLines; t != nil && int64(len(first)) > *t {
		first = first[int64(len(first))-*t:]
	}
	for _, l := range first {
		if err := out.write(l); err != nil {
			return ignoreLimit(err)
		}
	}
	if out.flush != nil {
		out.flush()
	}
	if !out.opts.follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ended := false
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			ended = true
		case <-tick.C:
		}
		for _, l := range readAvailable() {
			if err := out.write(l); err != nil {
				return ignoreLimit(err)
			}
		}
		if out.flush != nil {
			out.flush()
		}
		if ended {
			return nil
		}
	}
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// lastLogLines returns up to n last lines (at most max bytes) of a log's content, for a
// FallbackToLogsOnError termination message.
func lastLogLines(path string, n, max int) string {
	var b bytes.Buffer
	out := &logOutput{w: &b, opts: logOptions{tailLines: ptrInt64(int64(n))}}
	if err := streamLog(context.Background(), path, nil, out); err != nil {
		return ""
	}
	s := b.String()
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}

func ptrInt64(v int64) *int64 { return &v }
