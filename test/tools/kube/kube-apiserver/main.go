// Command kube-apiserver is the upstream Kubernetes API server, built from the module proxy
// for ferry's local test stack. It only wires the upstream command.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
