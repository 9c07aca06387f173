package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// kubelet sets the first three host-wide sysctls when it starts, with no option to leave them
// alone (protectKernelDefaults only turns a difference into a start failure); the stack raises
// the last (see raiseHostSysctls). The first stack saves their values; the last one to stop puts
// them back.
var savedSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", inotifyInstances}

// inotifyInstances limits inotify instances per user (128 by default): every kubelet, containerd
// and kube-proxy takes several, and with ten stacks up kubelets failed to start ("too many open
// files" from fsnotify).
const inotifyInstances = "fs/inotify/max_user_instances"

// raiseHostSysctls raises the inotify instance limit to minInotifyInstances (never lowers it).
func raiseHostSysctls() error {
	const minInotifyInstances = 8192
	p := filepath.Join("/proc/sys", inotifyInstances)
	v, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var cur int
	if _, err := fmt.Sscan(string(v), &cur); err != nil || cur >= minInotifyInstances {
		return err
	}
	return os.WriteFile(p, []byte(fmt.Sprint(minInotifyInstances)), 0o644)
}

var hostSysctlsFile = filepath.Join(runtimeRoot, "host-sysctls")

// saveHostSysctls records the current values unless a running stack recorded them already.
func saveHostSysctls() error {
	var b strings.Builder
	for _, k := range savedSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s=%s\n", k, strings.TrimSpace(string(v)))
	}
	f, err := os.OpenFile(hostSysctlsFile, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// restoreHostSysctls writes the recorded values back once no stack with real nodes is running.
func restoreHostSysctls() error {
	claims, _ := filepath.Glob(filepath.Join(runtimeRoot, "block-*"))
	for _, c := range claims {
		if target, err := os.Readlink(c); err == nil && pidAlive(ownerPid(target)) {
			return nil // a running stack's kubelet still counts on them
		}
	}
	data, err := os.ReadFile(hostSysctlsFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", k, v, err))
		}
	}
	errs = append(errs, os.Remove(hostSysctlsFile))
	return errors.Join(errs...)
}
