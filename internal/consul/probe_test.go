package consul

import (
	"context"
	"errors"
	"sync"
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
	if p.Err() == nil {
		t.Fatal("no error recorded")
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
