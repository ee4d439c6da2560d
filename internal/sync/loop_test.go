package sync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/metrics"
	"github.com/hapctl/hapctl/internal/runtime"
)

func newLoop(f *fakeHAProxy, store *consul.Store, backends ...config.Backend) *Loop {
	return &Loop{Backends: backends, Source: store, Runtime: f, Metrics: metrics.New(), Log: zerolog.Nop(),
		Probe: 5 * time.Millisecond, Resync: time.Hour}
}

func runLoop(t *testing.T, l *Loop) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		f := l.Runtime.(*fakeHAProxy)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.violations) > 0 {
			t.Errorf("commands that break the slot rules: %v", f.violations)
		}
	})
}

func waitTable(t *testing.T, f *fakeHAProxy, backend, want string) {
	t.Helper()
	if !poll(func() bool { return f.table(backend) == want }) {
		t.Fatalf("table of %s:\n got  %s\n want %s", backend, f.table(backend), want)
	}
}

func TestLoopFollowsConsul(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 3)
	store := newStore()
	l := newLoop(f, store, backend())
	runLoop(t, l)

	// Before Consul answers, nothing is sent.
	waitFor(t, func() bool { return !l.Status().LastSync.IsZero() })
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "set ") {
			t.Fatalf("command %q before Consul answered", c)
		}
	}
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1), inst("b", "10.0.0.2", 80, 3)}, Passing: 2, At: time.Now()})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=10.0.0.2:80/ready/3 srv3=127.0.0.1:1/maint/1")

	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("b", "10.0.0.2", 80, 3)}, Passing: 1, At: time.Now()})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/maint/1 srv2=10.0.0.2:80/ready/3 srv3=127.0.0.1:1/maint/1")

	if n := testutil.ToFloat64(l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultOK)); n != 6 {
		t.Fatalf("ok commands = %v, want 6 (addr+ready, addr+weight+ready, maint)", n)
	}
	if testutil.CollectAndCount(l.Metrics.Propagation) != 1 || histogramCount(t, l) != 2 {
		t.Fatalf("propagation not observed twice")
	}
	if v := testutil.ToFloat64(l.Metrics.Slots.WithLabelValues("be_web", "free")); v != 2 {
		t.Fatalf("free slots gauge = %v", v)
	}
}

func histogramCount(t *testing.T, l *Loop) uint64 {
	t.Helper()
	mfs, err := l.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hapctl_propagation_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// poll polls cond for up to 5 s and reports whether it held.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !poll(cond) {
		t.Fatal("condition not met in 5s")
	}
}

func TestLoopResyncsAfterWorkerChange(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	store := newStore()
	l := newLoop(f, store, backend())
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1)}, Passing: 1, At: time.Now()})
	runLoop(t, l)
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=127.0.0.1:1/maint/1")

	// HAProxy restarts: a new worker with the config's state (every slot maint).
	f.set(func(f *fakeHAProxy) {
		f.pid = 200
		f.backends["be_web"] = []runtime.ServerState{free("srv1"), free("srv2")}
	})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=127.0.0.1:1/maint/1")
	// Resending the same state is not propagation: no Consul answer came in.
	if n := histogramCount(t, l); n != 1 {
		t.Fatalf("propagation observed %d times, want once for the one Consul answer", n)
	}
	if st := l.Status(); st.HAProxyPid != 200 {
		t.Fatalf("pid = %d", st.HAProxyPid)
	}
}

func TestLoopRetriesWhenHAProxyIsDown(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 1)
	f.down = errors.New("connection refused")
	store := newStore()
	l := newLoop(f, store, backend())
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1)}, Passing: 1, At: time.Now()})
	runLoop(t, l)
	waitFor(t, func() bool { return l.Status().LastErr != nil })
	if !l.Status().LastSync.IsZero() {
		t.Fatal("a sync succeeded while HAProxy was down")
	}
	f.set(func(f *fakeHAProxy) { f.down = nil })
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1")
	waitFor(t, func() bool { return l.Status().LastErr == nil })
}

func TestLoopMissingBackendDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 1)
	store := newStore()
	other := config.Backend{Name: "be_missing", Service: "api", MinSlots: 1, MaxSlots: 4, EmptyGuard: true}
	l := newLoop(f, store, backend(), other)
	// A failing backend backs off for an hour: were the others to wait for
	// it, the second change below could never be applied in time.
	l.RetryBase, l.RetryMax = time.Hour, time.Hour
	store.Publish([]string{"be_web", "be_missing"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1)}, Passing: 1, At: time.Now()})
	runLoop(t, l)
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1")
	waitFor(t, func() bool {
		err := l.Status().LastErr
		return err != nil && strings.Contains(err.Error(), "backend be_missing is not in the running HAProxy")
	})
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 9)}, Passing: 1, At: time.Now()})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/9")
}

func TestLoopRebindsFreedSlotInNextSync(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	store := newStore()
	l := newLoop(f, store, backend())
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1), inst("b", "10.0.0.2", 80, 1)}, Passing: 2, At: time.Now()})
	runLoop(t, l)
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=10.0.0.2:80/ready/1")
	// b goes, d comes, no free slot: srv2 goes to maint, then takes d.
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1), inst("d", "10.0.0.4", 80, 1)}, Passing: 2, At: time.Now()})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=10.0.0.4:80/ready/1")
	var sent []string
	for _, c := range f.commands() {
		if strings.Contains(c, "srv2") && strings.HasPrefix(c, "set ") {
			sent = append(sent, c)
		}
	}
	want := []string{"set server be_web/srv2 addr 10.0.0.2 port 80", "set server be_web/srv2 state ready",
		"set server be_web/srv2 state maint", "set server be_web/srv2 addr 10.0.0.4 port 80", "set server be_web/srv2 state ready"}
	if strings.Join(sent, "\n") != strings.Join(want, "\n") {
		t.Fatalf("srv2 got:\n%s\nwant:\n%s", strings.Join(sent, "\n"), strings.Join(want, "\n"))
	}
	// The new address comes in a later sync than the maint, after HAProxy's
	// state was read again: never in the batch that takes the slot out.
	maint := f.batchOfCommand("set server be_web/srv2 state maint", 0)
	read := f.batchOfCommand("show servers state be_web", maint)
	addr := f.batchOfCommand("set server be_web/srv2 addr 10.0.0.4 port 80", 0)
	if maint == 0 || read == 0 || addr <= read {
		t.Fatalf("maint in batch %d, state read again in %d, new address in %d", maint, read, addr)
	}
}

func TestRestartIsNoOp(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 3)
	snap := consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1), inst("b", "10.0.0.2", 80, 7)}, Passing: 2, At: time.Now()}
	first := newLoop(f, consul.NewStore(), backend())
	first.Source.(*consul.Store).Publish([]string{"be_web"}, snap)
	if err := first.Sync(context.Background(), []string{"be_web"}); err != nil {
		t.Fatal(err)
	}
	before := len(f.commands())
	// A new hapctl process: no memory, same Consul, same HAProxy.
	second := newLoop(f, consul.NewStore(), backend())
	second.Source.(*consul.Store).Publish([]string{"be_web"}, snap)
	if err := second.Sync(context.Background(), []string{"be_web"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.commands()[before:] {
		if strings.HasPrefix(c, "set ") {
			t.Fatalf("restart sent %q", c)
		}
	}
}

// newStore returns a Store whose drains were read (none).
func newStore() *consul.Store {
	s := consul.NewStore()
	s.PublishDrains(nil)
	return s
}

func TestLoopWaitsForDrainsThenAppliesThem(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	store := consul.NewStore()
	l := newLoop(f, store, backend())
	runLoop(t, l)
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1)}, Passing: 1, At: time.Now()})
	// Consul answered but the drains were not read yet: an instance an
	// operator drained must not be put in service, so nothing is sent.
	published := time.Now()
	l.Kick()
	waitFor(t, func() bool { return l.Status().LastAttempt.After(published) })
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "set ") {
			t.Fatalf("command %q before the drains were read", c)
		}
	}
	// The first read of the drains finds none: the backend that waited for
	// it is synced at once, without another change in Consul.
	store.PublishDrains(map[string]consul.Overrides{})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=127.0.0.1:1/maint/1")
	store.PublishDrains(map[string]consul.Overrides{"be_web": {"a": {State: runtime.StateDrain, Reason: "deploy", At: time.Now()}}})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/drain/1 srv2=127.0.0.1:1/maint/1")
	if st := l.Status().Backends["be_web"]; st.Desired.Slots[0].Override == nil || st.Desired.Slots[0].Override.Reason != "deploy" {
		t.Fatalf("status does not show the drain: %+v", st.Desired.Slots[0])
	}
	// A drain of another backend does not touch this one; lifting it does.
	store.PublishDrains(map[string]consul.Overrides{"be_other": {"a": {State: runtime.StateMaint}}})
	waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=127.0.0.1:1/maint/1")
}
