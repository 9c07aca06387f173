// Command demo runs a whole migration on one machine (`make demo`): it starts the local
// two-cluster stack, migrates the file-uploader app with stage, stage, final and restore, prints
// a report, and exits non-zero if the target differs from the source.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/test/demo"
	"github.com/ferry-dev/ferry/test/stack"
)

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	fmt.Println("==> starting the local two-cluster stack (source and target with OpenShift APIs, Velero, registries, S3)")
	start := time.Now()
	s, err := stack.Start(ctx, stack.Options{OpenShift: true, Logf: func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	fmt.Printf("    up in %s\n", time.Since(start).Round(time.Second))
	// the stack stops the dashboard with its other processes
	if url, err := startDashboard(s); err != nil {
		fmt.Fprintln(os.Stderr, "demo: no dashboard:", err)
	} else {
		fmt.Printf("==> dashboard: open %s to watch the migration live (ferry-datamover dashboard)\n", url)
	}
	report, err := demo.Run(ctx, s, os.Stdout)
	fmt.Println("\n==> stopping the stack (`make stack-up` keeps one running to explore by hand)")
	if stopErr := s.Stop(); stopErr != nil {
		fmt.Fprintln(os.Stderr, "demo: stopping the stack:", stopErr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		os.Exit(1)
	}
	if !report.OK() {
		fmt.Fprintln(os.Stderr, "\ndemo: the target differs from the source")
		os.Exit(1)
	}
}
