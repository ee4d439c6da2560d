package consul

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
)

// flakyStatus fails the first `down` probes, then answers.
type flakyStatus struct {
	mu    sync.Mutex
	down  int
	calls int
}

func (f *flakyStatus) LeaderWithQueryOptions(*api.QueryOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.down {
		return "", errors.New("connection refused")
	}
	return "127.0.0.1:8300", nil
}

func TestProbeReportsAndRestartsHungQueries(t *testing.T) {
	t.Parallel()
	status := &flakyStatus{down: 2}
	var errs int
	var mu sync.Mutex
	p := &Probe{Status: status, Interval: 20 * time.Millisecond, Log: zerolog.Nop(),
		OnError: func(error) { mu.Lock(); errs++; mu.Unlock() }}
	// The first call hangs (a dead connection); the next answers.
	one := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80)}
	fake := &scripted{called: make(chan struct{}, 100)}
	store := NewStore()
	w := &Watch{Service: "web", Backends: []string{"be"}, Health: fake, Store: store, Log: zerolog.Nop(), Probe: p}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.Run(ctx) }()
	go func() { defer wg.Done(); w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	<-fake.called // the hung call
	deadline := time.Now().Add(5 * time.Second)
	for p.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the probe never reported the agent down")
		}
		time.Sleep(time.Millisecond)
	}
	fake.mu.Lock()
	fake.answers = []answer{{one, 10, nil}}
	fake.mu.Unlock()
	// Recovery restarts the hung call at once: a second call, answered.
	select {
	case <-fake.called:
	case <-time.After(5 * time.Second):
		t.Fatal("the hung query was not restarted when the agent answered again")
	}
	for {
		if snap, ok := store.Snapshot("be"); ok && snap.Index == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted query's answer was not published")
		}
		time.Sleep(time.Millisecond)
	}
	if p.Err() != nil {
		t.Fatalf("probe error after recovery: %v", p.Err())
	}
	if len(store.Errors()) != 0 {
		t.Fatalf("the restart counted as a failed query: %v", store.Errors())
	}
	mu.Lock()
	defer mu.Unlock()
	if errs != 2 {
		t.Fatalf("OnError called %d times, want 2", errs)
	}
}

func TestProbeClearedByAnAnswer(t *testing.T) {
	t.Parallel()
	p := &Probe{Log: zerolog.Nop()}
	back := p.recovered()
	p.record(errors.New("timeout"))
	if p.Err() != nil {
		t.Fatal("one failed probe counted as an outage")
	}
	p.record(errors.New("timeout"))
	if p.Err() == nil {
		t.Fatal("two failed probes in a row did not count as an outage")
	}
	p.answered()
	if p.Err() != nil {
		t.Fatal("an answer did not clear the probe's error")
	}
	select {
	case <-back:
	default:
		t.Fatal("recovery not signalled")
	}
	var nilProbe *Probe
	nilProbe.answered()
	if nilProbe.Err() != nil || nilProbe.recovered() != nil {
		t.Fatal("a nil probe is not inert")
	}
}

// TestRestartAfterFailuresDoesNotBlock: a call that hangs after failed ones
// (the agent restarting) is restarted by the probe, and the call after it
// must not block on the old index: the error clears with the next answer,
// though nothing changed.
func TestRestartAfterFailuresDoesNotBlock(t *testing.T) {
	t.Parallel()
	one := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80)}
	fake := &scripted{called: make(chan struct{}, 100), answers: []answer{
		{one, 10, nil},
		{nil, 0, errors.New("connection refused")},
	}}
	p := &Probe{Log: zerolog.Nop()}
	store := NewStore()
	w := &Watch{Service: "web", Backends: []string{"be"}, Health: fake, Store: store, Log: zerolog.Nop(), Probe: p}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for range 3 { // the answer, the error, then a call that hangs
		select {
		case <-fake.called:
		case <-time.After(5 * time.Second):
			t.Fatal("too few calls")
		}
	}
	if len(store.Errors()) != 1 {
		t.Fatalf("errors = %v", store.Errors())
	}
	fake.mu.Lock()
	fake.answers = []answer{{one, 10, nil}}
	fake.mu.Unlock()
	p.record(errors.New("down"))
	p.record(errors.New("down"))
	p.record(nil) // the agent answers again: the hung call is restarted
	select {
	case <-fake.called:
	case <-time.After(5 * time.Second):
		t.Fatal("the hung call was not restarted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(store.Errors()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the error did not clear: the call after the restart blocked on the old index")
		}
		time.Sleep(time.Millisecond)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if got := fake.calls[3].WaitIndex; got != 0 {
		t.Fatalf("the call after the restart waits on index %d", got)
	}
}

// leaderless answers with no leader until elected is set.
type leaderless struct {
	elected atomic.Bool
	calls   atomic.Int64
}

func (l *leaderless) LeaderWithQueryOptions(*api.QueryOptions) (string, error) {
	l.calls.Add(1)
	if l.elected.Load() {
		return "127.0.0.1:8300", nil
	}
	return "", nil
}

func TestProbeRequiresALeader(t *testing.T) {
	t.Parallel()
	for _, require := range []bool{true, false} {
		status := &leaderless{}
		p := &Probe{Status: status, Interval: 5 * time.Millisecond, RequireLeader: require, Log: zerolog.Nop()}
		back := p.recovered()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		if require {
			for p.Err() == nil {
				if time.Now().After(deadline) {
					t.Fatal("no leader did not count as down")
				}
				time.Sleep(time.Millisecond)
			}
			status.elected.Store(true)
			select {
			case <-back:
			case <-time.After(5 * time.Second):
				t.Fatal("the election did not count as recovery")
			}
		} else {
			for status.calls.Load() < 10 {
				if time.Now().After(deadline) {
					t.Fatal("the probe does not run")
				}
				time.Sleep(time.Millisecond)
			}
			if p.Err() != nil {
				t.Fatalf("without RequireLeader, no leader counted as down: %v", p.Err())
			}
		}
		cancel()
		<-done
	}
}

// TestRestartedCallDoesNotBlockOnOldIndex: a call hung on index 10 (a dead
// connection) is restarted when the agent answers again; the agent may have
// come back with its index reset, so the next call must not wait on 10.
func TestRestartedCallDoesNotBlockOnOldIndex(t *testing.T) {
	t.Parallel()
	one := []*api.ServiceEntry{entry("web-1", "n", "10.0.0.1", "", 80)}
	fake := &scripted{called: make(chan struct{}, 100), answers: []answer{{one, 10, nil}}}
	p := &Probe{Log: zerolog.Nop()}
	w := &Watch{Service: "web", Backends: []string{"be"}, Health: fake, Store: NewStore(), Log: zerolog.Nop(), Probe: p}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for range 2 { // the answer, then a call that hangs on index 10
		select {
		case <-fake.called:
		case <-time.After(5 * time.Second):
			t.Fatal("too few calls")
		}
	}
	p.record(errors.New("down"))
	p.record(errors.New("down"))
	p.record(nil)
	select {
	case <-fake.called:
	case <-time.After(5 * time.Second):
		t.Fatal("the hung call was not restarted")
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.calls[1].WaitIndex != 10 || fake.calls[2].WaitIndex != 0 {
		t.Fatalf("wait indexes %d then %d, want 10 then 0", fake.calls[1].WaitIndex, fake.calls[2].WaitIndex)
	}
}
