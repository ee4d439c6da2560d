package sync

import (
	"context"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
)

// fakeResizer records what the loop asks of the Reloader.
type fakeResizer struct {
	mu       gosync.Mutex
	want     map[string]int
	persists int
}

func (r *fakeResizer) Want(backend string, slots int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want == nil {
		r.want = map[string]int{}
	}
	r.want[backend] = slots
}

func (r *fakeResizer) Persist() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.persists++
}

func (r *fakeResizer) get(backend string) (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.want[backend], r.persists
}

func instances(n int) consul.Snapshot {
	var out []consul.Instance
	for i := 1; i <= n; i++ {
		out = append(out, inst(fmt.Sprintf("web-%03d", i), fmt.Sprintf("10.0.1.%d", i), 80, 1))
	}
	return consul.Snapshot{Instances: out, Passing: n, At: time.Now()}
}

func growthBackend(growth string) config.Backend {
	return config.Backend{Name: "be_web", Service: "web", MinSlots: 2, MaxSlots: 64, Growth: growth, EmptyGuard: true,
		ServerOptions: "check inter 2s", ShrinkAfter: 0}
}

func (f *fakeHAProxy) count(backend, state string) int {
	n := 0
	for _, part := range strings.Fields(f.table(backend)) {
		if strings.Contains(part, "/"+state+"/") {
			n++
		}
	}
	return n
}

func syncOnce(t *testing.T, l *Loop) {
	t.Helper()
	if err := l.Sync(context.Background(), []string{"be_web"}); err != nil {
		t.Fatal(err)
	}
}

// resizingLoop is a loop over f for one be_web backend, with a fake
// Resizer.
func resizingLoop(f *fakeHAProxy, be config.Backend) (*consul.Store, *fakeResizer, *Loop) {
	store := newStore()
	r := &fakeResizer{}
	l := newLoop(f, store, be)
	l.Resizer = r
	return store, r, l
}

func TestLoopGrowsAndShrinksDynamically(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	store, r, l := resizingLoop(f, growthBackend(config.GrowthDynamic))

	// 5 instances in 2 slots: one sync adds srv3..srv8 (the next power of
	// two) and binds the new ones at once.
	store.Publish([]string{"be_web"}, instances(5))
	syncOnce(t, l)
	if got := len(strings.Fields(f.table("be_web"))); got != 8 {
		t.Fatalf("%d slots, want 8: %s", got, f.table("be_web"))
	}
	if f.count("be_web", "ready") != 5 {
		t.Fatalf("not all placed in one sync: %s", f.table("be_web"))
	}
	cmds := strings.Join(f.commands(), "\n")
	for _, c := range []string{"add server be_web/srv3 10.0.1.3:80 weight 1 check inter 2s", "enable health be_web/srv3",
		"set server be_web/srv3 state ready", "add server be_web/srv8 127.0.0.1:1 weight 1 check inter 2s"} {
		if !strings.Contains(cmds, c+"\n") {
			t.Errorf("no %q in:\n%s", c, cmds)
		}
	}
	if want, persists := r.get("be_web"); want != 0 || persists != 1 {
		t.Fatalf("resizer: want %d persists %d; dynamic growth needs no reload and one persist", want, persists)
	}
	st := l.Status().Backends["be_web"]
	if st.Growth != config.GrowthDynamic {
		t.Fatalf("growth %q", st.Growth)
	}

	// Down to 1 (shrink_after 0): the freed slots go to maint, then the
	// trailing free ones are deleted down to min_slots; srv1 stays. srv8
	// still has connections: its deletion waits, the sync does not fail.
	f.set(func(f *fakeHAProxy) { f.busy = map[string]bool{"be_web/srv8": true} })
	store.Publish([]string{"be_web"}, instances(1))
	syncOnce(t, l)
	syncOnce(t, l)
	if got := f.table("be_web"); got != "srv1=10.0.1.1:80/ready/1 srv2=10.0.1.2:80/maint/1 srv8=127.0.0.1:1/maint/1" {
		t.Fatalf("after shrink with a busy slot: %s", got)
	}
	if err := l.Status().LastErr; err != nil {
		t.Fatalf("a busy slot failed the sync: %v", err)
	}
	if _, persists := r.get("be_web"); persists < 2 {
		t.Fatalf("deleting slots was not persisted")
	}
	// Once its connections are gone, the next look deletes it.
	f.set(func(f *fakeHAProxy) { f.busy = nil })
	syncOnce(t, l)
	if got := f.table("be_web"); got != "srv1=10.0.1.1:80/ready/1 srv2=10.0.1.2:80/maint/1" {
		t.Fatalf("after the busy slot is free: %s", got)
	}
}

func TestLoopFallsBackToReload(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	f.static = map[string]bool{"be_web": true}
	store, r, l := resizingLoop(f, growthBackend(config.GrowthDynamic))
	store.Publish([]string{"be_web"}, instances(3))
	runLoop(t, l)
	waitFor(t, func() bool { n, _ := r.get("be_web"); return n == 4 })
	st := l.Status().Backends["be_web"]
	if st.Growth != config.GrowthReload || !strings.Contains(st.GrowthWhy, "dynamic load balancing") {
		t.Fatalf("growth %q why %q", st.Growth, st.GrowthWhy)
	}
	if f.count("be_web", "ready") != 2 {
		t.Fatalf("the instances that fit are not placed: %s", f.table("be_web"))
	}
	// Once the reload gave it slots, nothing more is asked.
	f.set(func(f *fakeHAProxy) { f.backends["be_web"] = append(f.backends["be_web"], free("srv3"), free("srv4")) })
	l.Kick()
	waitFor(t, func() bool { n, _ := r.get("be_web"); return n == 0 && f.count("be_web", "ready") == 3 })
}

func TestLoopShrinksByReloadAfterShrinkAfter(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 16)
	store := newStore()
	r := &fakeResizer{}
	be := growthBackend(config.GrowthReload)
	be.ShrinkAfter = 300 * time.Millisecond
	l := newLoop(f, store, be)
	l.Resizer = r
	store.Publish([]string{"be_web"}, instances(3))
	start := time.Now()
	runLoop(t, l)
	// Nothing changes in Consul: the loop comes back by itself when
	// shrink_after is up.
	waitFor(t, func() bool { n, _ := r.get("be_web"); return n == 8 })
	if waited := time.Since(start); waited < be.ShrinkAfter {
		t.Fatalf("shrink asked after %s, before shrink_after %s", waited, be.ShrinkAfter)
	}
}

// Every applied change asks for the file and the state file to be written,
// so that a reload by someone else starts from HAProxy's current state; a
// sync that sends nothing asks for nothing.
func TestLoopPersistsEveryAppliedChange(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	store, r, l := resizingLoop(f, growthBackend(config.GrowthDynamic))

	store.Publish([]string{"be_web"}, instances(1)) // binds srv1: no slot added
	syncOnce(t, l)
	if got := f.table("be_web"); !strings.HasPrefix(got, "srv1=10.0.1.1:80/ready/1 ") {
		t.Fatalf("not bound: %s", got)
	}
	if _, persists := r.get("be_web"); persists != 1 {
		t.Fatalf("binding an instance: %d persists, want 1", persists)
	}
	syncOnce(t, l)
	if _, persists := r.get("be_web"); persists != 1 {
		t.Fatalf("a sync with nothing to do: %d persists, want still 1", persists)
	}
	// A new weight is a change too.
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("web-001", "10.0.1.1", 80, 5)}, Passing: 1, At: time.Now()})
	syncOnce(t, l)
	if got := f.table("be_web"); !strings.HasPrefix(got, "srv1=10.0.1.1:80/ready/5 ") {
		t.Fatalf("weight not applied: %s", got)
	}
	if _, persists := r.get("be_web"); persists != 2 {
		t.Fatalf("a weight change: %d persists, want 2", persists)
	}
}

// A start is written once every backend has synced; a backend without an
// answer from Consul holds that back for startWrite at most, and slots
// added or removed are written at once.
func TestLoopPersistsAfterTheStart(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	api := growthBackend(config.GrowthDynamic)
	api.Name, api.Service = "be_api", "api"
	store, r, l := resizingLoop(f, growthBackend(config.GrowthDynamic))
	l.Backends = append(l.Backends, api) // never answered by Consul

	store.Publish([]string{"be_web"}, instances(1))
	syncOnce(t, l)
	if _, persists := r.get("be_web"); persists != 0 {
		t.Fatalf("written before be_api's first sync: %d", persists)
	}
	l.firstSync = time.Now().Add(-startWrite - time.Second)
	store.Publish([]string{"be_web"}, consul.Snapshot{Instances: []consul.Instance{inst("web-001", "10.0.1.1", 80, 3)}, Passing: 1, At: time.Now()})
	syncOnce(t, l)
	if _, persists := r.get("be_web"); persists != 1 {
		t.Fatalf("not written startWrite after the first sync: %d", persists)
	}

	// Slots added at runtime are written at once, start or not.
	f2 := newFake("be_web", 2)
	store2, r2, l2 := resizingLoop(f2, growthBackend(config.GrowthDynamic))
	l2.Backends = append(l2.Backends, api)
	store2.Publish([]string{"be_web"}, instances(5))
	syncOnce(t, l2)
	if _, persists := r2.get("be_web"); persists != 1 {
		t.Fatalf("added slots not written at once: %d", persists)
	}
}
