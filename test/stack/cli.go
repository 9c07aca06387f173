package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Kubectl runs the real kubectl against the cluster with its admin kubeconfig and returns
// stdout. The error carries the command and its stderr.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin (e.g. `apply -f -`).
func (c *Cluster) KubectlStdin(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return run(ctx, stdin, c.stack.tools.kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
}

// Velero runs the real velero CLI against the cluster's Velero (its namespace, admin
// kubeconfig) and returns stdout.
func (c *Cluster) Velero(ctx context.Context, args ...string) (string, error) {
	return run(ctx, nil, c.stack.tools.velero, append([]string{"--kubeconfig=" + c.Kubeconfig, "--namespace=" + c.VeleroNamespace}, args...)...)
}

// KubectlPath and VeleroPath are the CLIs the helpers run, for callers that need a Cmd.
func (s *Stack) KubectlPath() string { return s.tools.kubectl }
func (s *Stack) VeleroPath() string  { return s.tools.velero }

func run(ctx context.Context, stdin io.Reader, path string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", path, strings.Join(args, " "), err, out)
	}
	return stdout.String(), nil
}
