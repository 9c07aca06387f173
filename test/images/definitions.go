// Package images builds the container images of ferry's local stack on this machine, without
// Docker and without a public registry: ferry's own images from the same definitions as
// deploy/Dockerfile.datamover and deploy/Dockerfile.plugins (dockerfile_test.go keeps the two
// in step), a busybox image for test apps, and the pause image the stack's containerd uses as
// its sandbox image. Root filesystems come from Debian packages (mmdebstrap over the machine's
// apt sources, busybox-static), layers and images are packed as OCI with go-containerregistry,
// and everything is cached by content under the cache directory, so a warm build costs seconds.
package images

import "fmt"

// Definition is one image: a base, files on top, and the image config.
type Definition struct {
	// Name is the repository name the image is pushed under.
	Name string
	// Dockerfile is the repository's Dockerfile this definition mirrors ("" for test-only
	// images).
	Dockerfile string
	// Debian lists packages installed on a Debian bookworm root filesystem (the stand-in for
	// debian:bookworm-slim); nil means no Debian base.
	Debian []string
	// Busybox installs a static busybox as /bin/busybox with a link in /bin for every applet.
	Busybox bool
	// Files are copied in as a layer on top.
	Files []File
	// Dirs are empty directories (mode 1777 when Sticky) made in the files layer.
	Dirs []Dir
	// User, Entrypoint, Cmd and Env are the image config.
	User       string
	Entrypoint []string
	Cmd        []string
	Env        []string
}

// File is one file of an image's top layer.
type File struct {
	// Dest is the absolute path in the image.
	Dest string
	// From says where the file comes from.
	From Source
}

// Dir is a directory made in an image's top layer.
type Dir struct {
	Path   string
	Sticky bool
}

// Source is where a file of an image comes from.
type Source struct {
	// FerryBinary names one of ferry's binaries (`make build`, in the FerryBinDir).
	FerryBinary string
	// Busybox is the static busybox of Debian's busybox-static.
	Busybox bool
	// GoPackage is a main package of this repository, built statically for the image.
	GoPackage string
}

// dockerPath is the PATH Docker writes into every image config it builds; the images here carry
// the same, so an entrypoint found by Docker is found by containerd too.
const dockerPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image names the stack pushes.
const (
	DatamoverName = "ferry-datamover"
	PluginsName   = "ferry-plugins"
	AppName       = "ferry-testapp"
	PauseName     = "pause"
)

// Datamover is deploy/Dockerfile.datamover: Debian with rsync, stunnel4, acl and ca-certificates,
// and ferry-datamover, run as 65532.
var Datamover = Definition{
	Name:       DatamoverName,
	Dockerfile: "deploy/Dockerfile.datamover",
	Debian:     []string{"rsync", "stunnel4", "acl", "ca-certificates"},
	Files:      []File{{Dest: "/usr/local/bin/ferry-datamover", From: Source{FerryBinary: "ferry-datamover"}}},
	User:       "65532:65532",
	Entrypoint: []string{"ferry-datamover"},
	Env:        []string{dockerPath},
}

// Plugins is deploy/Dockerfile.plugins: busybox's cp and the plugin binary, nothing else.
var Plugins = Definition{
	Name:       PluginsName,
	Dockerfile: "deploy/Dockerfile.plugins",
	Files: []File{
		{Dest: "/bin/cp", From: Source{Busybox: true}},
		{Dest: "/plugins/ferry-plugins", From: Source{FerryBinary: "ferry-plugins"}},
	},
	User:       "65532:65532",
	Entrypoint: []string{"cp", "/plugins/ferry-plugins", "/target/."},
	Env:        []string{dockerPath},
}

// App is the image of the stack's test apps: busybox (sh, httpd, wget, …) and kube-get, which
// reads the API with client-go's in-cluster config (the way ferry's data mover will in a pod).
var App = Definition{
	Name:    AppName,
	Busybox: true,
	Files:   []File{{Dest: "/usr/local/bin/kube-get", From: Source{GoPackage: "./test/images/kube-get"}}},
	Dirs:    []Dir{{Path: "/tmp", Sticky: true}},
	Cmd:     []string{"sh"},
	Env:     []string{dockerPath},
}

// Serve is the command that makes the App image a web app: busybox httpd serving dir on port,
// with sh as the container's first process so that SIGTERM stops it at once (a first process
// without a handler ignores SIGTERM, and kubelet would wait the whole grace period). before, if
// not empty, is a shell command run in the background first.
func Serve(dir string, port int, before string) []string {
	script := fmt.Sprintf(`trap "exit 0" TERM; httpd -f -p %d -h %s & wait`, port, dir)
	if before != "" {
		script = "(" + before + ") & " + script
	}
	return []string{"sh", "-c", script}
}

// Pause is the sandbox image of the stack's containerd: a static program that waits for SIGTERM
// (and reaps orphans when the pod shares its PID namespace), as registry.k8s.io/pause does.
var Pause = Definition{
	Name:       PauseName,
	Files:      []File{{Dest: "/pause", From: Source{GoPackage: "./test/images/pause"}}},
	User:       "65535:65535",
	Entrypoint: []string{"/pause"},
}

// All are the images the stack builds.
var All = []Definition{Pause, App, Datamover, Plugins}
