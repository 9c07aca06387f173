package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of ferry-datamover. Commands may return errors carrying their own code (an
// exitCoder, e.g. send's classified rsync failure); everything else is 1.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks bad flags or arguments: exit code 2, and no retry makes sense.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

type exitCoder interface{ ExitCode() int }

// run executes the command tree and turns its error into an exit code, printing the reason on
// stderr (stdout may carry machine-readable output).
func run(root *cobra.Command) int {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "ferry-datamover: %v\n", err)
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	var c exitCoder
	if errors.As(err, &c) && c.ExitCode() != 0 {
		return c.ExitCode()
	}
	return exitFailure
}

// signalContext is ctx, cancelled by SIGTERM or SIGINT; the signal is remembered for the exit
// code.
func signalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if sig, ok := <-ch; ok {
			cancel(signalError{sig.(syscall.Signal)})
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel(nil) }
}

// signalError: stopped by a signal; the exit code is the shell's 128+signal.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "stopped by " + e.sig.String() }
func (e signalError) ExitCode() int { return 128 + int(e.sig) }

// interrupted turns an error caused by a signal into one that exits 128+signal.
func interrupted(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var s signalError
	if cause := context.Cause(ctx); errors.As(cause, &s) {
		return fmt.Errorf("%w: %v", s, err)
	}
	return err
}
