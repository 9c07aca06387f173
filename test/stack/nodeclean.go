package stack

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A real node leaves things outside its folders that no process exit removes: mounts (container
// root filesystems, volumes, the pods' network namespaces), cgroups and the processes in them
// (containerd's shims outlive containerd by design), and CNI result files. Everything of a
// stack's nodes is named so it can be found: mounts under the runtime folder
// /run/ferry/<pid>-b<block>, cgroups /ferry-<pid>-b<block>-<cluster> in every hierarchy, CNI
// networks ferry-<pid>-b<block>-<cluster>. The node processes (containerd, kubelet, kube-proxy)
// join their node's cgroup, so the shims, runc and every container are in it too.

const cgroupRoot = "/sys/fs/cgroup"

// cniResultsDir is where containerd's CNI library caches results (not configurable in 1.6).
const cniResultsDir = "/var/lib/cni/results"

// containerLogLinks is where kubelet links each container's log file (a fixed path in kubelet).
const containerLogLinks = "/var/log/containers"

// removeContainerLogLinks removes kubelet's links in /var/log/containers whose target matches.
func removeContainerLogLinks(match func(target string) bool) {
	entries, _ := os.ReadDir(containerLogLinks)
	for _, e := range entries {
		p := filepath.Join(containerLogLinks, e.Name())
		if target, err := os.Readlink(p); err == nil && match(target) {
			_ = os.Remove(p)
		}
	}
}

// cgroupName is the cgroup (in every hierarchy) of a stack's node: the kubelet's cgroupRoot.
func cgroupName(a nodeAddresses, cluster string) string {
	return fmt.Sprintf("ferry-%d-b%d-%s", os.Getpid(), a.block, cluster)
}

// hierarchies lists the mounted cgroup v1 hierarchies (and the v2 one of a hybrid setup).
func hierarchies() []string {
	entries, _ := os.ReadDir(cgroupRoot)
	var out []string
	for _, e := range entries {
		p := filepath.Join(cgroupRoot, e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// makeNodeCgroup creates the node's cgroup in every hierarchy. cpuset needs its cpus and mems
// filled before a task may join; they are copied from the root.
func makeNodeCgroup(name string) error {
	for _, h := range hierarchies() {
		p := filepath.Join(h, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", p, err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup %s %s: %w", p, f, err)
				}
			}
		}
	}
	return nil
}

// joinCgroup moves a process into a cgroup of the pids and freezer hierarchies (enough to find
// and kill everything it starts; memory and CPU accounting stay where they were).
func joinCgroup(name string, pid int) error {
	for _, h := range []string{"pids", "freezer"} {
		dir := filepath.Join(cgroupRoot, h, name, "node")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// cgroupPids lists every process in a cgroup tree of the pids hierarchy.
func cgroupPids(name string) []int {
	var pids []int
	_ = filepath.WalkDir(filepath.Join(cgroupRoot, "pids", name), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killCgroup SIGKILLs every process in the cgroup tree until it is empty (a dying shim may still
// fork), then removes the tree in every hierarchy, deepest first.
func killCgroup(name string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := cgroupPids(name)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v still alive after SIGKILL", name, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, h := range hierarchies() {
		root := filepath.Join(h, name)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			// An emptied cgroup can be busy for a moment while the kernel finishes the exits.
			var err error
			for range 50 {
				if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below dir (lazily: a mount still busy for a moment
// goes once its last user does).
func unmountUnder(dir string) error {
	var errs []error
	for range 3 {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("mounts left under %s: %s", dir, strings.Join(left, ", ")))
	}
	return errors.Join(errs...)
}

// removeRuntimeDir removes a stack's runtime folder after unmounting what is mounted in it,
// and the CNI results of its nodes' pods.
func removeRuntimeDir(dir string) {
	states, _ := filepath.Glob(filepath.Join(dir, "*", "containerd"))
	for _, st := range states {
		removeSandboxCNIResults(st)
	}
	_ = unmountUnder(dir)
	_ = os.RemoveAll(dir)
}

// sandboxIDs lists the pod sandboxes containerd's CRI plugin keeps state for.
func sandboxIDs(containerdState string) []string {
	entries, _ := os.ReadDir(filepath.Join(containerdState, "io.containerd.grpc.v1.cri", "sandboxes"))
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

// removeSandboxCNIResults deletes the CNI results of a containerd's sandboxes: besides the pod
// network's, containerd runs the loopback plugin as network "cni-loopback" for each sandbox,
// and those results are named only by the sandbox.
func removeSandboxCNIResults(containerdState string) {
	for _, id := range sandboxIDs(containerdState) {
		files, _ := filepath.Glob(filepath.Join(cniResultsDir, "*-"+id+"-*"))
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
}

// removeCNIResults deletes the CNI result files of one network name.
func removeCNIResults(network string) {
	files, _ := filepath.Glob(filepath.Join(cniResultsDir, network+"-*"))
	for _, f := range files {
		_ = os.Remove(f)
	}
}

// removeOrphanNodes cleans up after stacks whose process died: the processes in their node
// cgroups, then their mounts and runtime folders, cgroups, CNI results and block claims.
func removeOrphanNodes() {
	for _, h := range hierarchies() {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), "ferry-")
			if !e.IsDir() || !ok {
				continue
			}
			pid := ownerPid(rest)
			if pid == 0 || pid == os.Getpid() || pidAlive(pid) {
				continue
			}
			_ = killCgroup(e.Name())
		}
	}
	entries, _ := os.ReadDir(runtimeRoot)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "block-") {
			if target, err := os.Readlink(filepath.Join(runtimeRoot, name)); err == nil && !pidAlive(ownerPid(target)) {
				_ = os.Remove(filepath.Join(runtimeRoot, name))
			}
			continue
		}
		pid := ownerPid(name)
		if pid == 0 || pid == os.Getpid() || pidAlive(pid) {
			continue
		}
		removeRuntimeDir(filepath.Join(runtimeRoot, name))
	}
	removeContainerLogLinks(func(target string) bool {
		rest, ok := strings.CutPrefix(target, runtimeRoot+"/")
		pid := ownerPid(rest)
		return ok && pid != 0 && pid != os.Getpid() && !pidAlive(pid)
	})
	_ = restoreHostSysctls()
	results, _ := filepath.Glob(filepath.Join(cniResultsDir, "ferry-*"))
	for _, f := range results {
		if pid := ownerPid(strings.TrimPrefix(filepath.Base(f), "ferry-")); pid != 0 && pid != os.Getpid() && !pidAlive(pid) {
			_ = os.Remove(f)
		}
	}
}
