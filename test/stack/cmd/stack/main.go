// Command stack starts and stops ferry's local two-cluster stack by hand (`make stack-up`,
// `make stack-down`), for poking at it with kubectl and velero.
//
//	stack up   [--dir DIR] [--kubernetes] [--without-ferry]   start in the background (no-op if running)
//	stack down [--dir DIR]                                     stop and remove all state
//	stack run  --dir DIR ...                                   (internal) the background process
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/test/stack"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	dir := fs.String("dir", "", "stack folder (default <repo>/_output/stack)")
	plain := fs.Bool("kubernetes", false, "plain Kubernetes pair, without the OpenShift APIs")
	noFerry := fs.Bool("without-ferry", false, "run Velero without ferry's plugins")
	_ = fs.Parse(args)
	if *dir == "" {
		root, err := stack.RepoRoot()
		if err != nil {
			fail(err)
		}
		*dir = filepath.Join(root, "_output", "stack")
	}
	d := daemonDir(*dir)
	var err error
	switch cmd {
	case "up":
		err = up(d, args)
	case "down":
		err = down(d)
	case "run":
		err = run(d, *plain, *noFerry)
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: stack up|down [--dir DIR] [--kubernetes] [--without-ferry]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stack:", err)
	os.Exit(1)
}

// daemonDir holds the background process's files next to the stack's state.
type daemonDir string

func (d daemonDir) state() string { return filepath.Join(string(d), "state") }
func (d daemonDir) pid() string   { return filepath.Join(string(d), "pid") }
func (d daemonDir) ready() string { return filepath.Join(string(d), "ready") }
func (d daemonDir) log() string   { return filepath.Join(string(d), "stack.log") }

// running returns the pid of a live background process, or 0.
func (d daemonDir) running() int {
	data, err := os.ReadFile(d.pid())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func up(d daemonDir, args []string) error {
	if pid := d.running(); pid != 0 {
		if info, err := os.ReadFile(d.ready()); err == nil {
			fmt.Printf("The stack is already running (pid %d).\n\n%s", pid, info)
			return nil
		}
		return waitUp(d, pid)
	}
	if err := os.RemoveAll(string(d)); err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.Create(d.log())
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(self, append([]string{"run"}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command and its terminal
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(d.pid(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	fmt.Printf("Starting the stack in the background (pid %d, log %s)…\n", cmd.Process.Pid, d.log())
	_ = cmd.Process.Release()
	return waitUp(d, cmd.Process.Pid)
}

func waitUp(d daemonDir, pid int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		if info, err := os.ReadFile(d.ready()); err == nil {
			fmt.Print(string(info))
			return nil
		}
		if syscall.Kill(pid, 0) != nil {
			data, _ := os.ReadFile(d.log())
			return fmt.Errorf("the stack failed to start; its log (%s):\n%s", d.log(), data)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("the stack did not come up within 10 minutes; see %s", d.log())
}

func down(d daemonDir) error {
	if pid := d.running(); pid != 0 {
		fmt.Printf("Stopping the stack (pid %d)…\n", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(90 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL) // its processes die with it (death signal)
			time.Sleep(time.Second)
		}
	}
	stack.RemoveOrphans()
	if err := os.RemoveAll(string(d)); err != nil {
		return err
	}
	fmt.Println("The stack is down and its state removed.")
	return nil
}

// run is the background process: it owns the stack until SIGTERM or SIGINT.
func run(d daemonDir, plain, noFerry bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opts := stack.Options{
		Dir:       d.state(),
		OpenShift: !plain,
		Logf:      func(format string, args ...any) { fmt.Printf(time.Now().Format("15:04:05 ")+format+"\n", args...) },
	}
	if noFerry {
		opts.Plugins = []string{}
	}
	s, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.ready(), []byte(s.Instructions()), 0o644); err != nil {
		_ = s.Stop()
		return err
	}
	seen := map[string]bool{}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.Stop()
		case <-tick.C:
			for _, p := range s.Problems() {
				if !seen[p] {
					seen[p] = true
					fmt.Println("stack: PROBLEM:", p)
				}
			}
		}
	}
}
