// Package version holds the build version, set with -ldflags at build time.
package version

// Version is ferry's version; `make build` sets it from git describe.
var Version = "dev"
