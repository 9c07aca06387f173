//go:build tools

// Package tools pins the upstream AWS object-store plugin so `go build` can build it from this module.
package tools

import _ "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws"
