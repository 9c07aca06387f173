package stack

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScheduleOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		last   string // the durations file; "" for none
		slots  int
		arrive []string
		want   []string // the order in which they get their turn
	}{
		{
			name: "longest first, untimed before all", last: `{"short": 1, "mid": 10, "long": 100}`, slots: 1,
			arrive: []string{"short", "mid", "new", "long"}, want: []string{"new", "long", "mid", "short"},
		},
		{
			name: "no file: as they came", slots: 1,
			arrive: []string{"b", "a", "c"}, want: []string{"b", "a", "c"},
		},
		{
			name: "unreadable file: as they came", last: `{not json`, slots: 1,
			arrive: []string{"b", "a"}, want: []string{"b", "a"},
		},
		{
			name: "two slots", last: `{"a": 1, "b": 2, "c": 3, "d": 4}`, slots: 2,
			arrive: []string{"a", "b", "c", "d"}, want: []string{"c", "d", "b", "a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "durations.json")
			if tc.last != "" {
				require.NoError(t, os.WriteFile(file, []byte(tc.last), 0o644))
			}
			s := newSchedule(tc.slots, file)
			for range tc.arrive {
				s.announce()
			}
			var (
				mu    sync.Mutex
				order []string
				wg    sync.WaitGroup
			)
			for i, name := range tc.arrive {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Arrive in the listed order: no turn is given before the last arrives.
					time.Sleep(time.Duration(i) * 20 * time.Millisecond)
					done := s.wait(name)
					mu.Lock()
					order = append(order, name)
					n := len(order)
					mu.Unlock()
					// With two slots the first two turns come together: finish them in order.
					time.Sleep(time.Duration(n) * 20 * time.Millisecond)
					done()
				}()
			}
			wg.Wait()
			// The first turns, one per slot, come at once: in no order.
			sort.Strings(order[:tc.slots])
			assert.Equal(t, tc.want, order)
			assert.Zero(t, s.busy, "every slot given back")
		})
	}
}

func TestScheduleReleaseAndSave(t *testing.T) {
	file := filepath.Join(t.TempDir(), "durations.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"other": 7}`), 0o644))
	s := newSchedule(1, file)
	s.announce()
	done := s.wait("parent")
	// The parent gives its slot to its subtest, and still counts the subtest's time as its own.
	s.release("parent")
	s.announce()
	sub := s.wait("parent/sub")
	time.Sleep(1100 * time.Millisecond)
	sub()
	done()
	s.release("parent") // a second release changes nothing
	assert.Zero(t, s.busy)
	require.NoError(t, s.save())
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var got map[string]float64
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, map[string]float64{"other": 7, "parent": 1, "parent/sub": 1}, got, "this run's times over the last run's")
}
