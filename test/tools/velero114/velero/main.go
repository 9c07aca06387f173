// Command velero is the upstream Velero server and CLI at v1.14.0, the oldest release ferry is
// tested with, built from its module for ferry's local test stack. It only wires the upstream
// command, as Velero's cmd/velero does.
package main

import (
	"os"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/vmware-tanzu/velero/pkg/cmd"
	"github.com/vmware-tanzu/velero/pkg/cmd/velero"
)

func main() {
	defer klog.Flush()
	cmd.CheckError(velero.NewCommand(filepath.Base(os.Args[0])).Execute())
}
