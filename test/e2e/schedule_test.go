//go:build e2e

package e2e

import (
	"flag"
	"sort"
	"sync"
	"testing"
	"time"
)

// The e2e tests mostly wait (for Velero, pods, copies), so they run side by side; the package
// takes as long as its longest test plus what queues behind it. Go starts parallel tests in no
// particular order, so a 7-minute test could start last. slots starts them longest first
// instead: go test's -parallel is the number of slots, and Go's own limit is lifted.

// expected is roughly how long each test took in `make test` (seconds, 2 cores): only the order
// matters. A test not listed starts after the listed ones.
var expected = map[string]int{
	// Not by its length: it writes and copies gigabytes, which slows every stack's etcd, so it
	// starts once the longest tests are under way.
	"TestLargeVolume":                     60,
	"TestStackFaults":                     420,
	"TestRestrictedMigrationOnRealNodes":  370,
	"TestFaults":                          280,
	"TestDashboard":                       250,
	"TestScheduledStages":                 220,
	"TestStageDuringFinal":                170,
	"TestMigrateWithOlderVelero":          125,
	"TestStageStageFinalRestore":          120,
	"TestBadInputFailsClearly":            110,
	"TestSidecarKilledMidTransfer":        100,
	"TestOverlappingRequests":             90,
	"TestFinalOfAMovedVolume":             70,
	"TestPodRunner":                       55,
	"TestTenantCannotSteerTransfers":      47,
	"TestDeployManifests":                 44,
	"TestMigrateNamespaceOpenShift":       40,
	"TestPodSecurityNamespaces":           40,
	"TestStateOnly":                       35,
	"TestPluginContract":                  34,
	"TestMigrateNamespacePlainKubernetes": 34,
	"TestIdentities":                      19,
}

// gather is how long the first test waits for the others to ask for a slot: Go releases every
// parallel test at once, once the serial ones have ended (TestPluginContract, TestDemo and
// TestImageStreamMigration set the shared stack's ferry-config or this process's environment;
// they run one at a time while the unit tests of `make test` still take the CPU).
const gather = time.Second

var slots scheduler

// useSlots takes go test's -parallel as the number of slots and lifts Go's own limit, which
// testing reads when m.Run starts. Called by TestMain after flag.Parse.
func useSlots() {
	p := flag.Lookup("test.parallel")
	slots.free = p.Value.(flag.Getter).Get().(int)
	if err := p.Value.Set("1000"); err != nil {
		panic(err)
	}
}

// parallel is t.Parallel, then a slot in longest-first order, held until t ends.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	start := time.Now()
	release := slots.acquire(t.Name())
	if waited := time.Since(start); waited > 5*time.Second {
		t.Logf("started after waiting %s for a slot", waited.Round(time.Second))
	}
	t.Cleanup(release)
}

type waiter struct {
	name  string
	ready chan struct{}
}

type scheduler struct {
	mu       sync.Mutex
	free     int
	waiting  []waiter
	gathered bool
	timer    *time.Timer
}

func (s *scheduler) acquire(name string) func() {
	w := waiter{name: name, ready: make(chan struct{})}
	s.mu.Lock()
	s.waiting = append(s.waiting, w)
	if s.timer == nil {
		s.timer = time.AfterFunc(gather, func() {
			s.mu.Lock()
			s.gathered = true
			s.dispatch()
			s.mu.Unlock()
		})
	} else if s.gathered {
		s.dispatch()
	}
	s.mu.Unlock()
	<-w.ready
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.free++
			s.dispatch()
			s.mu.Unlock()
		})
	}
}

// dispatch hands free slots to the longest waiting tests. Called with mu held.
func (s *scheduler) dispatch() {
	sort.SliceStable(s.waiting, func(i, j int) bool { return expected[s.waiting[i].name] > expected[s.waiting[j].name] })
	for s.free > 0 && len(s.waiting) > 0 {
		s.free--
		close(s.waiting[0].ready)
		s.waiting = s.waiting[1:]
	}
}
