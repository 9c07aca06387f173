package stack

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Programs of the stack. The Debian ones come from hack/install-deps.sh (`make deps`), the rest
// are built by hack/build-tools.sh (`make tools`) into the cache, and ferry's own by `make build`.
const (
	progEtcd        = "etcd"
	progRegistry    = "docker-registry"
	progAPIServer   = "kube-apiserver"
	progKCM         = "kube-controller-manager"
	progKubectl     = "kubectl"
	progVelero      = "velero"
	progAWSPlugin   = "velero-plugin-for-aws"
	progVersityGW   = "versitygw"
	progUnshare     = "unshare"
	progNsenter     = "nsenter"
	progIP          = "ip"
	progScheduler   = "kube-scheduler"
	progKubelet     = "kubelet"
	progKubeProxy   = "kube-proxy"
	progContainerd  = "containerd"
	progCtr         = "ctr"
	progRunc        = "runc"
	progIptables    = "iptables"
	progConntrack   = "conntrack"
	progMmdebstrap  = "mmdebstrap"
	cniBridge       = "/usr/lib/cni/bridge"
	FerryPluginsBin = "ferry-plugins"
)

// RepoRoot finds the root of the ferry repository from the working directory (tests run in
// their package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(strings.NewReader(string(data)))
			if sc.Scan() && strings.TrimSpace(sc.Text()) == "module github.com/ferry-dev/ferry" {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the ferry repository (no go.mod of github.com/ferry-dev/ferry above the working directory)")
		}
		dir = parent
	}
}

// ToolsDir is where hack/build-tools.sh puts the third-party programs: $FERRY_CACHE_DIR/bin,
// default ~/.cache/ferry/bin (the same rule as the script's).
func ToolsDir() string {
	cache := os.Getenv("FERRY_CACHE_DIR")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "ferry")
	}
	return filepath.Join(cache, "bin")
}

// FerryBinDir is where `make build` puts ferry's binaries: $FERRY_BIN_DIR, default
// <repo>/_output/bin.
func FerryBinDir() (string, error) {
	if d := os.Getenv("FERRY_BIN_DIR"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("FERRY_BIN_DIR is not set and %w", err)
	}
	return filepath.Join(root, "_output", "bin"), nil
}

// tools resolves every program path once, so a missing one fails the start with a message that
// says how to get it.
type tools struct {
	etcd, registry, apiServer, kcm, kubectl, velero, awsPlugin, versitygw string
	// real nodes only
	scheduler, kubelet, kubeProxy, containerd, ctr string
}

func findTools(toolsDir string, veleroVersion string) (tools, error) {
	var missing []string
	inCache := func(name string) string {
		p := filepath.Join(toolsDir, name)
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, fmt.Sprintf("%s (not in %s: run `make tools`)", name, toolsDir))
		}
		return p
	}
	onPath := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (not on PATH: run `make deps`)", name))
		}
		return p
	}
	t := tools{
		etcd:      onPath(progEtcd),
		registry:  onPath(progRegistry),
		apiServer: inCache(progAPIServer),
		kcm:       inCache(progKCM),
		kubectl:   inCache(progKubectl),
		velero:    inCache(progVelero),
		awsPlugin: inCache(progAWSPlugin),
		versitygw: inCache(progVersityGW),
	}
	if veleroVersion != "" {
		t.velero = inCache(progVelero + "-" + veleroVersion)
	}
	onPath(progUnshare)
	onPath(progNsenter)
	onPath(progIP)
	t.scheduler = inCache(progScheduler)
	t.kubelet = inCache(progKubelet)
	t.kubeProxy = inCache(progKubeProxy)
	t.containerd = onPath(progContainerd)
	t.ctr = onPath(progCtr)
	onPath(progRunc)
	onPath(progIptables)
	onPath(progConntrack)
	onPath(progMmdebstrap)
	if _, err := os.Stat(cniBridge); err != nil {
		missing = append(missing, fmt.Sprintf("%s (Debian's containernetworking-plugins: run `make deps`)", cniBridge))
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("the local stack needs programs that are missing: %s", strings.Join(missing, "; "))
	}
	return t, nil
}

// checkRoot fails clearly when not root: network namespaces, mount namespaces and bind mounts
// need it.
func checkRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the local stack must run as root (uid %d): it creates network namespaces for Velero and mount namespaces for transfer pods", os.Geteuid())
	}
	return nil
}
