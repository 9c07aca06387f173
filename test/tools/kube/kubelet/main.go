// Command kubelet is the upstream kubelet (a real node of the local test stack), built from the module proxy for ferry's local test stack. It only
// wires the upstream command.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand()))
}
