package stack

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// diagnosticLines is how much of each log a failed test shows.
const diagnosticLines = 40

// StartT starts a stack for one test and stops it when the test ends, failed or not. A stack
// that cannot start fails the test with the failing component's log tail; a failed test logs
// the tail of every log of the stack before it is stopped.
func StartT(t testing.TB, opts Options) *Stack {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the local stack: %v", err)
	}
	t.Cleanup(func() {
		s.logf = func(string, ...any) {}
		if t.Failed() {
			t.Log(s.diagnosticsText())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the local stack: %v", err)
		}
	})
	return s
}

func (s *Stack) diagnosticsText() string { return s.diagnosticsSince(time.Time{}) }

func (s *Stack) diagnosticsSince(since time.Time) string {
	var b strings.Builder
	b.WriteString("local stack diagnostics:\n")
	s.writeDiagnostics(&b, diagnosticLines, since)
	return b.String()
}

// Pool shares stacks among the tests of a package: one stack per kind of Options (OpenShift or
// not, plugins, Velero flags), started by the first test that asks and stopped as soon as the
// last test that wants it is done (Parallel), or by Close, which TestMain calls after m.Run.
// Each test still gets clean namespaces (Stack.Namespace).
type Pool struct {
	mu     sync.Mutex
	stacks map[string]*pooled
}

type pooled struct {
	once   sync.Once
	s      *Stack
	err    error
	wanted int // tests announced by Parallel and not yet done
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{stacks: map[string]*pooled{}} }

// entry is the pool's entry for key, made on first use; want is added to its count of
// announced tests.
func (p *Pool) entry(key string, want int) *pooled {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.stacks[key]
	if !ok {
		e = &pooled{}
		p.stacks[key] = e
	}
	e.wanted += want
	return e
}

// Parallel is t.Parallel for a test on the pool's stack for opts, which it returns once t runs.
// Called first thing in every test, it counts the tests that want each stack before any of them
// starts (Go runs the parallel tests only after every test has reached t.Parallel), so a stack
// stops as soon as the last of them is done instead of idling, on a 2-core machine, beside the
// rest of the package.
func (p *Pool) Parallel(t *testing.T, opts Options) *Stack {
	t.Helper()
	key := poolKey(opts)
	e := p.entry(key, 1)
	t.Cleanup(func() {
		if err := p.release(key, e); err != nil {
			t.Errorf("stopping the local stack: %v", err)
		}
	})
	t.Parallel()
	return p.get(t, e, opts)
}

// release stops e's stack when no announced test wants it any more; a later Get starts a new one.
func (p *Pool) release(key string, e *pooled) error {
	p.mu.Lock()
	e.wanted--
	done := e.wanted == 0 && p.stacks[key] == e
	if done {
		delete(p.stacks, key)
	}
	p.mu.Unlock()
	if !done {
		return nil
	}
	// Waits for a start still under way; one never begun cannot begin now.
	e.once.Do(func() {})
	if e.s == nil {
		return nil
	}
	return e.s.Stop()
}

// Get returns the pool's stack for opts, starting it on first use. If the stack cannot start,
// or one of its processes has died, the test fails with the logs that say why; a failed test
// logs the tails of all the stack's logs.
func (p *Pool) Get(t testing.TB, opts Options) *Stack {
	t.Helper()
	return p.get(t, p.entry(poolKey(opts), 0), opts)
}

func (p *Pool) get(t testing.TB, e *pooled, opts Options) *Stack {
	t.Helper()
	e.once.Do(func() {
		// Progress goes to stderr: the stack outlives the test that started it.
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		e.s, e.err = Start(ctx, opts)
	})
	if e.err != nil {
		t.Fatalf("starting the local stack: %v", e.err)
	}
	s := e.s
	if problems := s.Problems(); len(problems) > 0 {
		t.Fatalf("the local stack is broken: %s\n%s", strings.Join(problems, "; "), s.diagnosticsText())
	}
	// A shared stack's logs span every test so far: a failed test shows only those it wrote to.
	since := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.diagnosticsSince(since))
		}
	})
	return s
}

// Close stops every stack of the pool.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []string
	for _, e := range p.stacks {
		if e.s != nil {
			if err := e.s.Stop(); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	p.stacks = map[string]*pooled{}
	if len(errs) > 0 {
		return fmt.Errorf("stopping local stacks: %s", strings.Join(errs, "; "))
	}
	return nil
}

func poolKey(o Options) string {
	plugins := "<ferry>"
	if o.Plugins != nil {
		plugins = strings.Join(o.Plugins, ",")
	}
	return fmt.Sprintf("name=%s openshift=%v plugins=%s velero=%s tools=%s bin=%s dir=%s",
		o.Name, o.OpenShift, plugins, strings.Join(o.VeleroArgs, " "), o.ToolsDir, o.FerryBinDir, o.Dir)
}
