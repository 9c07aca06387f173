package stack

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// schedule lets a package's tests run a few at a time, the longest first. go test releases its
// parallel tests in no particular order, and on a 2-core machine a long test that happens to start
// last is the whole run's tail; started first, it runs beside the short ones. How long each test
// took is kept in the cache for the next run (durationsFile); a test with no time on record goes
// first, so a new or renamed test is never the tail. go test's own -parallel must not be lower
// than the schedule's slots, or it decides the order again.
type schedule struct {
	mu      sync.Mutex
	slots   int
	busy    int
	pending int // announced, not yet waiting
	waiting []*waiter
	arrived int
	file    string
	last    map[string]time.Duration // read from file on first use
	took    map[string]time.Duration // this run's
	held    map[string]bool          // tests holding a slot
}

type waiter struct {
	name  string
	order int
	turn  chan struct{}
}

// unknownDuration ranks a test with no time on record ahead of every timed one.
const unknownDuration = 24 * time.Hour

func newSchedule(slots int, file string) *schedule {
	return &schedule{slots: slots, file: file, took: map[string]time.Duration{}, held: map[string]bool{}}
}

// durationsFile is where the schedule keeps the tests' times between runs, beside the images.
func durationsFile() string { return filepath.Join(filepath.Dir(ToolsDir()), "e2e-durations.json") }

// announce counts a test that will acquire once go test lets it run. Called before t.Parallel:
// go test releases parallel tests only after every test has reached t.Parallel, so the schedule
// hands out the first slots only when all announced tests are waiting and it can pick the longest.
func (s *schedule) announce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending++
}

// acquire blocks until t, announced, may run, and gives its slot back when t ends (or at
// release).
func (s *schedule) acquire(t *testing.T) { t.Cleanup(s.wait(t.Name())) }

// wait blocks until name, announced, may run; done gives its slot back (if release has not) and
// records its time: from its turn to done, subtests included, so a parent that gives its slot
// to its subtests still goes early.
func (s *schedule) wait(name string) (done func()) {
	w := &waiter{name: name, turn: make(chan struct{})}
	s.mu.Lock()
	s.load()
	s.pending--
	w.order = s.arrived
	s.arrived++
	s.waiting = append(s.waiting, w)
	s.dispatchLocked()
	s.mu.Unlock()
	<-w.turn
	start := time.Now()
	return func() {
		s.release(name)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.took[name] = time.Since(start).Round(time.Second)
	}
}

// release gives name's slot back; a second release is a no-op.
func (s *schedule) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held[name] {
		return
	}
	delete(s.held, name)
	s.busy--
	s.dispatchLocked()
}

// dispatchLocked gives the free slots to the waiting tests expected to take longest.
func (s *schedule) dispatchLocked() {
	if s.pending > 0 {
		return
	}
	sort.SliceStable(s.waiting, func(i, j int) bool {
		a, b := s.waiting[i], s.waiting[j]
		if da, db := s.expected(a.name), s.expected(b.name); da != db {
			return da > db
		}
		return a.order < b.order
	})
	for s.busy < s.slots && len(s.waiting) > 0 {
		next := s.waiting[0]
		s.waiting = s.waiting[1:]
		s.busy++
		s.held[next.name] = true
		close(next.turn)
	}
}

func (s *schedule) expected(name string) time.Duration {
	if d, ok := s.last[name]; ok {
		return d
	}
	return unknownDuration
}

// load reads the last run's times once; a missing or unreadable file only loses the order.
func (s *schedule) load() {
	if s.last != nil {
		return
	}
	s.last = map[string]time.Duration{}
	b, err := os.ReadFile(s.file)
	if err != nil {
		return
	}
	var secs map[string]float64
	if json.Unmarshal(b, &secs) != nil {
		return
	}
	for name, v := range secs {
		s.last[name] = time.Duration(v * float64(time.Second))
	}
}

// save records this run's times over the last run's, so a run of a few tests (go test -run)
// keeps the others' times.
func (s *schedule) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.took) == 0 {
		return nil
	}
	s.load()
	secs := map[string]float64{}
	for name, d := range s.last {
		secs[name] = d.Seconds()
	}
	for name, d := range s.took {
		secs[name] = d.Seconds()
	}
	b, err := json.MarshalIndent(secs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.file), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.file)
}
