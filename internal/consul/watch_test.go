package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

func TestQueryUpdate(t *testing.T) {
	t.Parallel()
	q := query{}
	steps := []struct {
		index     uint64
		changed   bool
		nextIndex uint64
	}{
		{0, true, 1},   // the first answer is new, even with index 0; never wait on 0
		{10, true, 10}, // the index moves on
		{10, false, 10},
		{12, true, 12},
		{5, true, 0}, // went backwards: reset so the next call does not block
		{5, true, 5},
		{5, false, 5},
	}
	for i, s := range steps {
		if got := q.update(s.index); got != s.changed || q.index != s.nextIndex {
			t.Fatalf("step %d: update(%d) = %v, index %d; want %v, %d", i, s.index, got, q.index, s.changed, s.nextIndex)
		}
	}
	q = query{}
	if !q.update(7) || q.index != 7 || q.update(7) {
		t.Fatalf("first answer: index %d", q.index)
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	for f := 1; f < 40; f++ {
		for i := 0; i < 50; i++ {
			d := backoff(f)
			ceiling := min(backoffBase<<min(f-1, 10), backoffMax)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", f, d, ceiling/2, ceiling)
			}
		}
	}
	// A burst goes through without delay; beyond it calls are spaced at the rate.
	q := newQuery(rate.Limit(10), 3)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if d := q.wait(now); d > 0 {
			t.Fatalf("call %d of the burst waits %s", i, d)
		}
	}
	if d := q.wait(now); d < 90*time.Millisecond || d > 110*time.Millisecond {
		t.Fatalf("call after the burst waits %s, want ~100ms", d)
	}
	q.failures = 2
	if d := q.wait(now); d < backoffBase || d > 2*backoffBase {
		t.Fatalf("after 2 failures wait = %s", d)
	}
}

// scripted answers a Watch from a list, recording each call's options; once
// the list is used up it blocks until the context ends.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	calls   []api.QueryOptions
	called  chan struct{}
}

type answer struct {
	entries []*api.ServiceEntry
	index   uint64
	err     error
}

func (s *scripted) ServiceMultipleTags(service string, tags []string, passing bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	s.mu.Lock()
	s.calls = append(s.calls, *q)
	var a *answer
	if len(s.answers) > 0 {
		a = &s.answers[0]
		s.answers = s.answers[1:]
	}
	s.mu.Unlock()
	s.called <- struct{}{}
	if a == nil || !passing {
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	return a.entries, &api.QueryMeta{LastIndex: a.index}, a.err
}

func TestWatchIndexAndPublish(t *testing.T) {
	t.Parallel()
	one := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80)}
	two := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80), entry("web-2", "n", "10.0.0.2", "", 80)}
	bad := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80), entry("evil", "n", "10.0.0.1", "x;y", 80)}
	fake := &scripted{called: make(chan struct{}, 100), answers: []answer{
		{one, 10, nil},
		{one, 10, nil}, // timeout of the blocking query: same index, dropped
		{nil, 0, errors.New("connection refused")},
		{one, 10, nil}, // recovered: published again to clear the error
		{two, 3, nil},  // index went backwards (Consul restarted)
		{two, 4, nil},
		{bad, 6, nil},
		{bad, 7, nil}, // the invalid instance is reported once, not twice
	}}
	store := NewStore()
	var invalid []Invalid
	var mu sync.Mutex
	w := &Watch{Service: "web", Tags: []string{"prod"}, Backends: []string{"be_a", "be_b"}, Health: fake, Store: store,
		Log:       zerolog.Nop(),
		OnInvalid: func(_ []string, inv Invalid) { mu.Lock(); invalid = append(invalid, inv); mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for i := 0; i < 9; i++ {
		select {
		case <-fake.called:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d calls", i)
		}
	}
	cancel()
	<-done

	// The call after the error does not block (0), so that the error clears
	// at once rather than at the next change.
	wantIndexes := []uint64{0, 10, 10, 0, 10, 0, 4, 6, 7}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for i, c := range fake.calls {
		if c.WaitIndex != wantIndexes[i] {
			t.Errorf("call %d: WaitIndex %d, want %d", i, c.WaitIndex, wantIndexes[i])
		}
		if c.WaitTime != DefaultWaitTime {
			t.Errorf("call %d: WaitTime %s", i, c.WaitTime)
		}
	}
	snap, ok := store.Snapshot("be_b")
	if !ok || snap.Index != 7 || snap.Passing != 2 || len(snap.Instances) != 1 || len(snap.Invalid) != 1 {
		t.Fatalf("last snapshot = %+v", snap)
	}
	if len(invalid) != 1 || invalid[0].ID != "evil" {
		t.Fatalf("invalid reported %+v, want evil once", invalid)
	}
	if len(store.Errors()) != 0 {
		t.Fatalf("errors left after recovery: %v", store.Errors())
	}
	if d := store.TakeDirty(); len(d) != 2 || d[0] != "be_a" {
		t.Fatalf("dirty = %v", d)
	}
}

func TestStoreFailKeepsSnapshot(t *testing.T) {
	t.Parallel()
	s := NewStore()
	s.Publish([]string{"be"}, Snapshot{Passing: 3, Index: 9})
	<-s.Notify()
	s.Fail([]string{"be"}, errors.New("down"))
	snap, ok := s.Snapshot("be")
	if !ok || snap.Passing != 3 {
		t.Fatalf("snapshot lost on failure: %+v", snap)
	}
	if err := s.Errors()["be"]; err == nil {
		t.Fatal("error not recorded")
	}
	select {
	case <-s.Notify():
		t.Fatal("a failure must not signal a change")
	default:
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	if Key("web", []string{"b", "a", "a"}) != Key("web", []string{"a", "b"}) || Key("web", nil) == Key("api", nil) {
		t.Fatal("keys")
	}
}

// TestWatchCallHasDeadline: an agent that accepts the query and never
// answers (stopped with SIGSTOP, a half-open connection) makes the call fail
// after the wait time plus slack, so the backend is reported, not frozen.
func TestWatchCallHasDeadline(t *testing.T) {
	t.Parallel()
	one := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80)}
	fake := &scripted{called: make(chan struct{}, 100), answers: []answer{{one, 10, nil}}}
	store := NewStore()
	w := &Watch{Service: "web", Backends: []string{"be"}, Health: fake, Store: store, Log: zerolog.Nop(),
		WaitTime: time.Millisecond, slack: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for store.Errors()["be"] == nil {
		if time.Now().After(deadline) {
			t.Fatal("a query that never answers was not reported")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(store.Errors()["be"], context.DeadlineExceeded) {
		t.Fatalf("error = %v", store.Errors()["be"])
	}
	if snap, ok := store.Snapshot("be"); !ok || len(snap.Instances) != 1 {
		t.Fatalf("the last good answer was lost: %+v", snap)
	}
}

func TestTooManyConnectionsIsExplained(t *testing.T) {
	t.Parallel()
	limited := api.StatusError{Code: 429, Body: "Your IP is issuing too many concurrent connections, please rate limit your calls"}
	fake := &scripted{called: make(chan struct{}, 100), answers: []answer{{nil, 0, limited}}}
	store := NewStore()
	w := &Watch{Service: "web", Backends: []string{"be"}, Health: fake, Store: store, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for range 2 {
		<-fake.called
	}
	err := store.Errors()["be"]
	if !errors.As(err, new(api.StatusError)) || !strings.Contains(fmt.Sprint(err), "raise limits.http_max_conns_per_client") {
		t.Fatalf("error = %v, want the 429 explained", err)
	}
	if other := explain(errors.New("connection refused")); other.Error() != "connection refused" {
		t.Fatalf("other errors changed: %v", other)
	}
}
