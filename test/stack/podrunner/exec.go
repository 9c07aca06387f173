package podrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/test/stack/spawn"
)

// A container is started as
//
//	unshare --mount --propagation private --pid --fork --kill-child --mount-proc -- \
//	    /bin/sh -c SETUP ferry-pod COMMAND ARGS...
//
// SETUP mounts a tmpfs on /mnt, bind-mounts the volumes at their mountPaths, mounts a tmpfs on
// /tmp (after the binds: the sources may live under the host's /tmp), changes to workingDir and
// execs the command line unchanged, through setpriv so it has only the capabilities its
// securityContext gives it. The PID namespace makes the command PID 1, so as in a
// container everything it started dies with it, and SIGTERM reaches it only if it handles it.
// --kill-child turns a SIGKILL of unshare into a SIGKILL of the pod's PID 1.

// process is one running container process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	code int32 // exit code (128+signal when killed), valid after done
}

// defaultCapabilities are what container runtimes (containerd, CRI-O) give a container whose
// securityContext asks for nothing else.
var defaultCapabilities = []string{
	"chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
	"setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
}

// privilegeArgs turns a container's securityContext into setpriv flags, so the command runs
// with the capabilities a container runtime would give it (still as root: runAsUser is not
// applied, as host-path volumes cannot be handed to another user the way fsGroup does).
// A privileged container keeps everything.
func privilegeArgs(sc *corev1.SecurityContext) []string {
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		return nil
	}
	caps := map[string]bool{}
	for _, c := range defaultCapabilities {
		caps[c] = true
	}
	capName := func(c corev1.Capability) string {
		return strings.TrimPrefix(strings.ToLower(string(c)), "cap_")
	}
	if sc != nil && sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			if capName(c) == "all" {
				caps = map[string]bool{}
			} else {
				delete(caps, capName(c))
			}
		}
		for _, c := range sc.Capabilities.Add {
			caps[capName(c)] = true
		}
	}
	names := make([]string, 0, len(caps))
	for c := range caps {
		names = append(names, "+"+c)
	}
	sort.Strings(names)
	args := []string{"--bounding-set=" + strings.Join(append([]string{"-all"}, names...), ","), "--inh-caps=-all"}
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--no-new-privs")
	}
	return args
}

// setupScript builds the shell code that prepares the mount namespace and then execs the
// command line, through setpriv with privArgs when there are any. Folders of pathDirs under the
// host's /tmp (ferry's binaries, when the checkout is there) stay visible under the pod's /tmp.
func setupScript(mounts []mount, workingDir string, privArgs []string, pathDirs []string) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	mountBin, mkdirBin := systemTool("mount"), systemTool("mkdir")
	fmt.Fprintf(&b, "%s -t tmpfs -o mode=0755 ferry-pod-mnt /mnt\n", mountBin)
	sorted := append([]mount(nil), mounts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].target < sorted[j].target })
	for _, m := range sorted {
		if m.file {
			fmt.Fprintf(&b, "%s -p %s\n: > %s\n", mkdirBin, shellQuote(filepath.Dir(m.target)), shellQuote(m.target))
		} else {
			fmt.Fprintf(&b, "%s -p %s\n", mkdirBin, shellQuote(m.target))
		}
		fmt.Fprintf(&b, "%s --bind %s %s\n", mountBin, shellQuote(m.source), shellQuote(m.target))
		if m.readOnly {
			fmt.Fprintf(&b, "%s -o remount,bind,ro %s\n", mountBin, shellQuote(m.target))
		}
	}
	// The new /tmp would hide them: park them under the pod's /mnt, then move them back in.
	var keep []string
	for _, d := range pathDirs {
		if d = filepath.Clean(d); strings.HasPrefix(d, "/tmp/") {
			keep = append(keep, d)
		}
	}
	for i, d := range keep {
		park := fmt.Sprintf("/mnt/.ferry-pod-keep-%d", i)
		fmt.Fprintf(&b, "%s -p %s\n%s --bind %s %s\n", mkdirBin, park, mountBin, shellQuote(d), park)
	}
	fmt.Fprintf(&b, "%s -t tmpfs -o mode=1777 ferry-pod-tmp /tmp\n", mountBin)
	for i, d := range keep {
		park := fmt.Sprintf("/mnt/.ferry-pod-keep-%d", i)
		fmt.Fprintf(&b, "%s -p %s\n%s --move %s %s\n%s %s\n", mkdirBin, shellQuote(d), mountBin, park, shellQuote(d), systemTool("rmdir"), park)
	}
	if workingDir != "" {
		fmt.Fprintf(&b, "cd %s\n", shellQuote(workingDir))
	} else {
		b.WriteString("cd /\n")
	}
	if len(privArgs) == 0 {
		b.WriteString(`exec "$@"` + "\n")
		return b.String()
	}
	quoted := make([]string, len(privArgs))
	for i, a := range privArgs {
		quoted[i] = shellQuote(a)
	}
	fmt.Fprintf(&b, "exec %s %s -- \"$@\"\n", systemTool("setpriv"), strings.Join(quoted, " "))
	return b.String()
}

// systemTool is the absolute path of a system program: the setup runs with the container's
// environment, whose PATH may not hold it.
func systemTool(name string) string {
	for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// shellQuote quotes s for sh: single quotes, with embedded ones spliced in.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startProcess starts a container's command line in its own namespaces, with stdout and stderr
// written to the instance's log.
func startProcess(cmdline, env []string, setup string, logs *logWriter) (*process, error) {
	args := append([]string{"--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
		"--", "/bin/sh", "-c", setup, "ferry-pod"}, cmdline...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = env
	cmd.Dir = "/"
	stdout, stderr, err := logs.pipes()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// If the runner dies, unshare dies (spawn sets the death signal), and with it
	// (--kill-child) the whole pod.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = spawn.Start(cmd)
	stdout.Close() // the child holds its own copies
	stderr.Close()
	if err != nil {
		logs.close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.code = exitCode(cmd.ProcessState, err)
		logs.close() // waits until both streams are drained
		close(p.done)
	}()
	return p, nil
}

func exitCode(st *os.ProcessState, err error) int32 {
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	if code := st.ExitCode(); code >= 0 {
		return int32(code)
	}
	if err != nil {
		return -1
	}
	return 0
}

// pid1 is the host pid of the container's PID 1 (unshare's only child), or 0.
func (p *process) pid1() int {
	pid := p.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0
	}
	child, _ := strconv.Atoi(fields[0])
	return child
}

// stop sends SIGTERM to PID 1 and SIGKILL to the pod after the grace period (re-read while
// waiting, so a forced deletion cuts it short).
func (p *process) stop(grace func() time.Duration) {
	start := time.Now()
	if child := p.pid1(); child > 0 {
		_ = syscall.Kill(child, syscall.SIGTERM)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
			if time.Since(start) >= grace() {
				_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
				return
			}
		}
	}
}

// runContainer starts a container once and waits for it to end. It returns the exit code, or
// an error: permanent (bad spec), errKilled, or a config problem worth retrying.
func (w *podWorker) runContainer(ctx context.Context, cr *containerRun, vols map[string]string) (int32, error) {
	if w.killCtx.Err() != nil {
		return 0, errKilled
	}
	c := cr.spec
	env, err := w.containerEnv(ctx, c)
	if err != nil {
		var perm *permanentError
		if errors.As(err, &perm) {
			return 0, err
		}
		w.setWaiting(ctx, cr, "CreateContainerConfigError", err.Error())
		return 0, err
	}
	if len(c.Command) == 0 {
		return 0, permanent("NoCommand", "container %q has no command: the pod runner has no images, so a transfer pod must spell out its command", c.Name)
	}
	cmdline := expandAll(append(append([]string(nil), c.Command...), c.Args...), envMap(env))
	mounts, err := containerMounts(c, vols)
	if err != nil {
		return 0, err
	}
	logDir := filepath.Join(w.dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return 0, err
	}
	inst := &instance{logPath: filepath.Join(logDir, fmt.Sprintf("%s-%d.log", c.Name, cr.restarts)), done: make(chan struct{})}
	logs, err := newLogWriter(inst.logPath)
	if err != nil {
		return 0, err
	}
	p, err := startProcess(cmdline, env, setupScript(mounts, c.WorkingDir, privilegeArgs(c.SecurityContext), w.r.opts.PathDirs), logs)
	if err != nil {
		return 0, permanent("StartError", "starting container %q: %v", c.Name, err)
	}
	started := metav1.Now()
	w.mu.Lock()
	cr.instances = append(cr.instances, inst)
	cr.proc = p
	cr.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}
	cr.ready = !cr.init && c.ReadinessProbe == nil
	w.mu.Unlock()
	w.writeStatus(ctx)
	w.log.Info("container started", "container", c.Name, "pid", p.cmd.Process.Pid, "restart", cr.restarts)
	if !cr.init && c.ReadinessProbe != nil {
		go w.probeReadiness(ctx, cr, p)
	}
	select {
	case <-p.done:
	case <-w.killCtx.Done():
		p.stop(w.currentGrace)
	}
	close(inst.done)
	term := &corev1.ContainerStateTerminated{
		ExitCode:    p.code,
		Reason:      "Completed",
		StartedAt:   started,
		FinishedAt:  metav1.Now(),
		ContainerID: w.containerID(c.Name, cr.restarts),
	}
	if p.code != 0 {
		term.Reason = "Error"
		if c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			term.Message = lastLogLines(inst.logPath, 80, 2048)
		}
	}
	w.mu.Lock()
	cr.proc = nil
	cr.ready = false
	cr.state = corev1.ContainerState{Terminated: term}
	w.mu.Unlock()
	w.writeStatus(ctx)
	w.log.Info("container exited", "container", c.Name, "exitCode", p.code)
	return p.code, nil
}

func (w *podWorker) containerID(name string, restart int32) string {
	return fmt.Sprintf("podrunner://%s-%s-%d", w.uid, name, restart)
}

func (w *podWorker) setWaiting(ctx context.Context, cr *containerRun, reason, msg string) {
	w.mu.Lock()
	changed := cr.state.Waiting == nil || cr.state.Waiting.Reason != reason || cr.state.Waiting.Message != msg
	cr.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	w.mu.Unlock()
	if changed {
		w.writeStatus(ctx)
	}
}
