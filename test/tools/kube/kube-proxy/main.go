// Command kube-proxy is the upstream kube-proxy (iptables mode, inside a node's network namespace), built from the module proxy for ferry's local test stack. It only
// wires the upstream command.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
