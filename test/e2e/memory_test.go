//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/proctest"
)

// peakMemory follows ferry's processes while a test runs and keeps the highest peak resident
// set (the kernel's VmHWM) of each kind: the plugins Velero started (children of the stack's
// processes roots() returns), and `ferry-datamover controller`, `send` and `serve` in the pods
// whose uids pods() returns (the data mover's and the transfer pods).
type peakMemory struct {
	roots func() []int
	pods  func() map[string]bool
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	peak map[string]int64 // kind → bytes
}

func watchMemory(roots func() []int, pods func() map[string]bool) *peakMemory {
	m := &peakMemory{roots: roots, pods: pods, stop: make(chan struct{}), done: make(chan struct{}), peak: map[string]int64{}}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// Stop ends the watch (once) and returns each kind's peak, in bytes.
func (m *peakMemory) Stop() map[string]int64 {
	m.once.Do(func() { close(m.stop) })
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

func (m *peakMemory) sample() {
	roots := map[int]bool{}
	for _, p := range m.roots() {
		roots[p] = true
	}
	pods := m.pods()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		argv := proctest.Args(pid)
		if argv == nil {
			continue
		}
		kind := ""
		switch filepath.Base(argv[0]) {
		case "ferry-plugins":
			if roots[proctest.Parent(pid)] {
				kind = "ferry-plugins"
			}
		case "ferry-datamover":
			if len(argv) < 2 {
				continue
			}
			if pods[proctest.PodUID(pid)] {
				kind = "ferry-datamover " + argv[1]
			}
		}
		if kind == "" {
			continue
		}
		if hwm := vmHWM(dir); hwm > 0 {
			m.mu.Lock()
			m.peak[kind] = max(m.peak[kind], hwm)
			m.mu.Unlock()
		}
	}
}

// vmHWM is the process's peak resident set in bytes, 0 when it cannot be read.
func vmHWM(dir string) int64 {
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
