package consul

import (
	"sort"
	"sync"
	"time"
)

// Snapshot is what Consul last answered for one backend's service.
type Snapshot struct {
	Instances []Instance
	Invalid   []Invalid
	// Passing is how many passing entries Consul returned, valid or not.
	Passing int
	Index   uint64
	// At is when the answer arrived: the start of propagation.
	At time.Time
}

// Store keeps the latest Snapshot of every backend and signals changes. The
// signal carries no data: the reader takes the set of changed backends and
// reads their latest state (level-based, missed signals are harmless).
type Store struct {
	mu     sync.Mutex
	snaps  map[string]Snapshot
	errs   map[string]error
	dirty  map[string]struct{}
	notify chan struct{}
	drains drains
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		snaps:  map[string]Snapshot{},
		errs:   map[string]error{},
		dirty:  map[string]struct{}{},
		notify: make(chan struct{}, 1),
	}
}

// Publish records a new answer for backends and clears their error.
func (s *Store) Publish(backends []string, snap Snapshot) {
	s.mu.Lock()
	for _, b := range backends {
		s.snaps[b] = snap
		delete(s.errs, b)
		s.dirty[b] = struct{}{}
	}
	s.mu.Unlock()
	s.signal()
}

// Fail records that the query for backends failed. The last snapshot stays:
// a failed read of Consul never empties a backend.
func (s *Store) Fail(backends []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range backends {
		s.errs[b] = err
	}
}

// Snapshot returns the latest snapshot of backend; false until the first
// answer arrived.
func (s *Store) Snapshot(backend string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snaps[backend]
	return snap, ok
}

// Errors returns the backends whose last query failed, with the error.
func (s *Store) Errors() map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]error, len(s.errs))
	for b, err := range s.errs {
		out[b] = err
	}
	return out
}

// Notify is signalled (without blocking, capacity 1) when a backend changed.
func (s *Store) Notify() <-chan struct{} { return s.notify }

// TakeDirty returns the backends changed since the last call, sorted.
func (s *Store) TakeDirty() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.dirty))
	for b := range s.dirty {
		out = append(out, b)
	}
	clear(s.dirty)
	sort.Strings(out)
	return out
}

func (s *Store) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
