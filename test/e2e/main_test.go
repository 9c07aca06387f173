//go:build e2e

// Package e2e holds ferry's end-to-end tests: real Velero servers with ferry's plugins, on the
// local two-cluster stack (package stack). `make test-e2e` runs them (as root: the stack uses
// network and mount namespaces).
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/ferry-dev/ferry/test/stack"
)

// stacks are shared by the tests of this package: one per kind (OpenShift or plain Kubernetes),
// started by the first test that needs it and stopped when the last is done (Pool.Parallel).
// Every test works in its own namespaces.
var stacks = stack.NewPool()

func TestMain(m *testing.M) {
	if servePluginsIfAsked() {
		return
	}
	code := m.Run()
	if err := stacks.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
