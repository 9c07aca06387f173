// Command kube-scheduler is the upstream scheduler (binds pods to the stack's real nodes), built from the module proxy for ferry's local test stack. It only
// wires the upstream command.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
