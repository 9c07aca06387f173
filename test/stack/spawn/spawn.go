// Package spawn starts the processes of ferry's test stack so that they die with the stack's
// process: each gets SIGKILL from the kernel when its parent goes (Pdeathsig), even if the test
// binary crashes. Linux ties that signal to the parent *thread*, and the Go runtime retires a
// thread when a goroutine that locked it ends, which would kill children started from it at a
// random moment. So every start happens on one OS thread that stays locked for the life of the
// program.
package spawn

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	requests = make(chan request)
	once     sync.Once
)

func loop() {
	runtime.LockOSThread() // never unlocked: this thread must outlive every child
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}

// Start starts cmd (as cmd.Start does) with Pdeathsig=SIGKILL set on its SysProcAttr.
func Start(cmd *exec.Cmd) error {
	once.Do(func() { go loop() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	requests <- request{cmd: cmd, done: done}
	return <-done
}
