package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/test/stack/spawn"
)

// ProcessSpec describes a host process the stack starts and supervises: its output goes to
// <Dir>/logs/<Name>.log and it is stopped with the stack.
type ProcessSpec struct {
	// Name names the process in logs and errors; it is also the log file's base name.
	Name string
	// Path is the program; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is added to the stack's own environment (later entries win).
	Env []string
	// Dir is the working directory ("" = the stack's directory).
	Dir string
	// NetNS runs the process inside a named network namespace (e.g. Cluster.NetNS, the one the
	// cluster's Velero runs in); "" runs it on the host network.
	NetNS string
}

// Process is a running supervised process.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // set before done is closed
	stopped bool  // Stop was called, so an exit is expected
	mu      sync.Mutex
}

// startProcess starts spec with its output in logDir/<name>.log. The process gets SIGKILL when
// the stack's process dies (see package spawn), so a crashed test leaves nothing behind.
func startProcess(logDir, workDir string, spec ProcessSpec) (*Process, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/ ") {
		return nil, fmt.Errorf("process name %q: want a non-empty name without slashes or spaces", spec.Name)
	}
	logPath := filepath.Join(logDir, spec.Name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process %s: %w", spec.Name, err)
	}
	path, args := spec.Path, spec.Args
	if spec.NetNS != "" {
		// nsenter execs the program in place (no fork for a network namespace), so the pid we
		// signal and the death signal both belong to the program itself.
		args = append([]string{"--net=" + netnsPath(spec.NetNS), "--", path}, args...)
		path = "nsenter"
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = workDir
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(logFile, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), path, strings.Join(args, " "))
	if err := spawn.Start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name, spec.Path, err)
	}
	p := &Process{Name: spec.Name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace. It returns nil once the
// process is gone.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// Kill ends the process group with SIGKILL at once, as a crash or an OOM kill would: the
// process gets no chance to tidy up. The stack does not count the exit as a problem. It
// returns nil once the process is gone.
func (p *Process) Kill() error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.Pid())
	}
}

// unexpectedExit describes an exit that nobody asked for, or "" while all is well.
func (p *Process) unexpectedExit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ""
	}
	select {
	case <-p.done:
		return fmt.Sprintf("%s exited unexpectedly: %v", p.Name, p.err)
	default:
		return ""
	}
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string { return tailFile(p.LogPath, n) }

// tailFile returns the last n lines of a file (at most the last 256 KiB of it are read).
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitReady polls check until it succeeds, the process exits, or the timeout passes. A failure
// carries the process's log tail, so a component that cannot start says why.
func waitReady(ctx context.Context, p *Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting (%v); last check: %v; log tail (%s):\n%s", p.Name, p.err, last, p.LogPath, p.Tail(40))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v; log tail (%s):\n%s", p.Name, timeout, last, p.LogPath, p.Tail(40))
		case <-tick.C:
		}
	}
}
