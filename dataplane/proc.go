package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// childGrace is how long a child has between SIGTERM and SIGKILL.
const childGrace = 5 * time.Second

// childCommand prepares a child process that never outlives ferry: it gets its own process
// group (its own children, e.g. the rsync daemons stunnel starts, are signalled with it) and
// SIGKILL when ferry dies, however it dies. Cancelling ctx sends SIGTERM to the group, then
// SIGKILL after childGrace.
func childCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGTERM) }
	cmd.WaitDelay = childGrace
	return cmd
}

// signalGroup signals the child's process group (falling back to the child alone).
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		return cmd.Process.Signal(sig)
	}
	return nil
}

// killGroup makes sure nothing of a finished or abandoned child is left running.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// forEachLine calls fn with each line of r ('\n' or '\r' terminated) until r is drained.
func forEachLine(r io.Reader, fn func(line string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sc.Split(scanLinesCR)
	for sc.Scan() {
		fn(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r) // a line longer than the buffer: drain, never block the child
}

// syncWriter serializes writes of whole lines from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// lookPath finds a program on PATH, trying each name in turn, with an error a person can act on.
func lookPath(what string, names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH (looked for %v); install it (Debian: apt-get install %s)", what, names, names[0])
}
