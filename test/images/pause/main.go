// Command pause is the sandbox ("pause") container of the local stack's pods: it holds the pod's
// namespaces until it is told to stop, and as PID 1 of a pod that shares its PID namespace it
// reaps orphaned children, as registry.k8s.io/pause does. Static, no libc: the image is this file
// alone.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
