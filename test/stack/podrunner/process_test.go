package podrunner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// These tests run real processes the way the runner runs containers (unshare, bind mounts), so
// they need root, as the whole stack does.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the pod runner needs root (mount and PID namespaces, bind mounts); running as uid %d", os.Geteuid())
	}
}

// runPod starts a command line as a container with volume dir mounted at /mnt/data.
func runPod(t *testing.T, vol string, cmdline ...string) (*process, string) {
	t.Helper()
	return runPodWith(t, vol, nil, cmdline...)
}

func runPodWith(t *testing.T, vol string, sc *corev1.SecurityContext, cmdline ...string) (*process, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "c-0.log")
	lw, err := newLogWriter(logPath)
	require.NoError(t, err)
	env := []string{"PATH=" + systemPath}
	p, err := startProcess(cmdline, env, setupScript([]mount{{source: vol, target: "/mnt/data"}}, "", privilegeArgs(sc), nil), lw)
	require.NoError(t, err)
	t.Cleanup(func() { p.stop(func() time.Duration { return 0 }) })
	return p, logPath
}

func wait(t *testing.T, p *process) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("container process did not end")
	}
}

func TestContainerProcess(t *testing.T) {
	requireRoot(t)
	vol := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(vol, "in.txt"), []byte("from the volume"), 0o644))
	p, logPath := runPod(t, vol, "/bin/sh", "-c",
		`echo "pid=$$"; cat /mnt/data/in.txt; echo; echo written > /mnt/data/out.txt; echo "tmp=$(ls -A /tmp | wc -l)"; echo oops >&2; exit 3`)
	wait(t, p)
	assert.Equal(t, int32(3), p.code)
	logs := lastLogLines(logPath, 100, 1<<20)
	assert.Contains(t, logs, "pid=1\n", "the command is PID 1 of its own PID namespace")
	assert.Contains(t, logs, "from the volume\n", "the volume is mounted at its mountPath")
	assert.Contains(t, logs, "tmp=0\n", "/tmp is private and empty")
	assert.Contains(t, logs, "oops\n", "stderr is logged")
	out, err := os.ReadFile(filepath.Join(vol, "out.txt"))
	require.NoError(t, err)
	assert.Equal(t, "written\n", string(out), "writes land in the volume's folder on the host")
}

func TestContainerStop(t *testing.T) {
	requireRoot(t)
	t.Run("SIGTERM reaches a PID 1 that handles it", func(t *testing.T) {
		p, logPath := runPod(t, t.TempDir(), "/bin/sh", "-c", `trap 'exit 7' TERM; echo ready; while true; do sleep 0.05; done`)
		waitForPID1(t, p)
		// The trap is set once "ready" is out: a SIGTERM before it would be ignored (PID 1 has no
		// default action), as a loaded machine showed.
		require.Eventually(t, func() bool { return strings.Contains(lastLogLines(logPath, 5, 4096), "ready") }, 10*time.Second, 10*time.Millisecond)
		p.stop(func() time.Duration { return 10 * time.Second })
		assert.Equal(t, int32(7), p.code)
	})
	t.Run("SIGKILL after the grace period", func(t *testing.T) {
		p, _ := runPod(t, t.TempDir(), "sleep", "1000")
		waitForPID1(t, p)
		start := time.Now()
		p.stop(func() time.Duration { return 300 * time.Millisecond })
		assert.Equal(t, int32(137), p.code, "sleep as PID 1 ignores SIGTERM, so it is killed")
		assert.Less(t, time.Since(start), 10*time.Second)
	})
	t.Run("everything the pod started dies with PID 1", func(t *testing.T) {
		p, _ := runPod(t, t.TempDir(), "/bin/sh", "-c", `sleep 987654 & sleep 0.2; exit 0`)
		wait(t, p)
		assert.Equal(t, int32(0), p.code)
		assert.Eventually(t, func() bool { return !processRunning("987654") }, 5*time.Second, 50*time.Millisecond,
			"a background process outlived its pod")
	})
}

func waitForPID1(t *testing.T, p *process) {
	t.Helper()
	require.Eventually(t, func() bool { return p.pid1() > 0 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
}

// processRunning reports whether a live process has arg in its command line.
func processRunning(arg string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(string(data), arg) && !strings.Contains(string(stat), ") Z ") {
			return true
		}
	}
	return false
}

// A container gets the capabilities its securityContext gives it, no more: a chown it may not
// do fails as it would in a cluster.
func TestContainerCapabilities(t *testing.T) {
	requireRoot(t)
	vol := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644))
	script := `grep CapBnd /proc/self/status; chown 1234 /mnt/data/f && echo chown-ok || echo chown-denied`
	only := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"DAC_READ_SEARCH"}}}
	p, logPath := runPodWith(t, vol, only, "/bin/sh", "-c", script)
	wait(t, p)
	logs := lastLogLines(logPath, 10, 4096)
	assert.Contains(t, logs, "CapBnd:\t0000000000000004", "only CAP_DAC_READ_SEARCH (bit 2)")
	assert.Contains(t, logs, "chown-denied")

	p, logPath = runPodWith(t, vol, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN"}}}, "/bin/sh", "-c", script)
	wait(t, p)
	assert.Contains(t, lastLogLines(logPath, 10, 4096), "chown-ok")
}

// TestContainerFindsBinariesUnderTmp: a checkout under the host's /tmp (ferry's binaries on
// PATH there) still runs, although the pod gets a /tmp of its own.
func TestContainerFindsBinariesUnderTmp(t *testing.T) {
	requireRoot(t)
	bin, err := os.MkdirTemp("/tmp", "ferry-bin-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(bin) })
	require.NoError(t, os.WriteFile(filepath.Join(bin, "hello-from-tmp"), []byte("#!/bin/sh\necho hello\n"), 0o755))
	require.NoError(t, os.WriteFile("/tmp/"+filepath.Base(bin)+"-sibling", nil, 0o644))
	t.Cleanup(func() { os.Remove("/tmp/" + filepath.Base(bin) + "-sibling") })

	logPath := filepath.Join(t.TempDir(), "c-0.log")
	lw, err := newLogWriter(logPath)
	require.NoError(t, err)
	env := []string{"PATH=" + bin + ":" + systemPath}
	script := setupScript([]mount{{source: t.TempDir(), target: "/mnt/data"}}, "", privilegeArgs(nil), []string{bin, "/usr/local/bin"})
	p, err := startProcess([]string{"/bin/sh", "-c", `hello-from-tmp; ls -A /tmp; echo "mnt=$(ls -A /mnt)"`}, env, script, lw)
	require.NoError(t, err)
	t.Cleanup(func() { p.stop(func() time.Duration { return 0 }) })
	wait(t, p)
	logs := lastLogLines(logPath, 100, 1<<20)
	assert.Equal(t, int32(0), p.code, logs)
	assert.Contains(t, logs, "hello\n")
	assert.NotContains(t, logs, "-sibling", "the rest of the host's /tmp stays hidden")
	assert.Contains(t, logs, "mnt=data\n", "nothing left over in /mnt")
}
