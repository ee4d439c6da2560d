package sync

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
)

func TestDesireRemovalGrace(t *testing.T) {
	t.Parallel()
	be := backend()
	be.RemovalGrace = time.Minute
	actual := []runtime.ServerState{
		{Backend: "be_web", Name: "srv1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Weight: 5},                                  // its instance left
		{Backend: "be_web", Name: "srv2", Addr: netip.MustParseAddr("10.0.0.2"), Port: 80, Weight: 1},                                  // stays
		{Backend: "be_web", Name: "srv3", Addr: netip.MustParseAddr("127.0.0.1"), Port: 1, Weight: 1, Admin: runtime.AdminForcedMaint}, // free
	}
	snap := consul.Snapshot{Instances: []consul.Instance{inst("b", "10.0.0.2", 80, 1), inst("c", "10.0.0.3", 80, 1)}, Passing: 2}
	d := Desire(Input{Backend: be, Snapshot: snap, Actual: actual})
	s1 := d.Slots[0]
	if !s1.Leaving || s1.State != runtime.StateDrain || s1.Weight != 5 || s1.Instance.Endpoint().String() != "10.0.0.1:80" || d.Freed != 0 {
		t.Fatalf("leaving slot: %+v (freed %d)", s1, d.Freed)
	}
	// The new instance takes the free slot, never the leaving one.
	if d.Slots[2].Instance == nil || d.Slots[2].Instance.ID != "c" {
		t.Fatalf("srv3: %+v", d.Slots[2])
	}
	p := MakePlan(d, actual)
	if got := opStrings(p); !slices.Contains(got, "set server be_web/srv1 state drain") || slices.ContainsFunc(got, func(s string) bool {
		return strings.HasPrefix(s, "set server be_web/srv1 addr") || s == "set server be_web/srv1 state maint"
	}) {
		t.Fatalf("plan: %v", got)
	}
	// Once its grace is over it goes to maint like any slot whose instance left.
	d = Desire(Input{Backend: be, Snapshot: snap, Actual: actual, Expired: map[string]bool{"srv1": true}})
	if d.Slots[0].Leaving || !d.Slots[0].Free() || d.Freed != 1 {
		t.Fatalf("expired slot: %+v", d.Slots[0])
	}
	// Without removal_grace: straight to maint.
	d = Desire(Input{Backend: backend(), Snapshot: snap, Actual: actual})
	if d.Slots[0].Leaving || !d.Slots[0].Free() {
		t.Fatalf("no grace: %+v", d.Slots[0])
	}
}

func opStrings(p Plan) []string {
	out := make([]string, len(p.Ops))
	for i, o := range p.Ops {
		out[i] = o.String()
	}
	return out
}

func TestLoopRemovalGrace(t *testing.T) {
	t.Parallel()
	two := consul.Snapshot{Instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1), inst("b", "10.0.0.2", 80, 1)}, Passing: 2}
	one := consul.Snapshot{Instances: []consul.Instance{inst("b", "10.0.0.2", 80, 1)}, Passing: 1}
	publish := func(s *consul.Store, snap consul.Snapshot) {
		snap.At = time.Now()
		s.Publish([]string{"be_web"}, snap)
	}
	// start runs a loop over three slots with two instances in service.
	start := func(t *testing.T, grace time.Duration, sessions map[string]int) (*fakeHAProxy, *consul.Store, *Loop) {
		t.Helper()
		f := newFake("be_web", 3)
		f.sessions = sessions
		store := newStore()
		be := backend()
		be.RemovalGrace = grace
		l := newLoop(f, store, be)
		runLoop(t, l)
		publish(store, two)
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		return f, store, l
	}
	t.Run("maint when the sessions end", func(t *testing.T) {
		t.Parallel()
		f, store, l := start(t, time.Hour, nil)
		f.set(func(f *fakeHAProxy) { f.sessions = map[string]int{"be_web/srv1": 2} })
		publish(store, one)
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/drain/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		// It keeps draining while sessions are open, counted every poll.
		waitFor(t, func() bool { return countPrefix(f.commands(), "show stat be_web") >= 3 })
		if got := f.table("be_web"); !strings.HasPrefix(got, "srv1=10.0.0.1:80/drain/1") {
			t.Fatalf("with sessions open: %s", got)
		}
		if st := l.Status().Backends["be_web"]; !st.Desired.Slots[0].Leaving {
			t.Fatalf("status does not show srv1 leaving: %+v", st.Desired.Slots[0])
		}
		f.set(func(f *fakeHAProxy) { f.sessions = nil })
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/maint/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
	})
	t.Run("maint when the grace is up", func(t *testing.T) {
		t.Parallel()
		grace := 300 * time.Millisecond
		f, store, _ := start(t, grace, map[string]int{"be_web/srv1": 7})
		publish(store, one)
		began := time.Now()
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/drain/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/maint/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		if d := time.Since(began); d < grace {
			t.Fatalf("maint after %s, before the grace of %s was up", d, grace)
		}
	})
	t.Run("the instance comes back", func(t *testing.T) {
		t.Parallel()
		f, store, l := start(t, time.Hour, map[string]int{"be_web/srv1": 1})
		publish(store, one)
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/drain/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		publish(store, two)
		waitTable(t, f, "be_web", "srv1=10.0.0.1:80/ready/1 srv2=10.0.0.2:80/ready/1 srv3=127.0.0.1:1/maint/1")
		if st := l.Status().Backends["be_web"]; st.Desired.Slots[0].Leaving || st.Desired.Slots[0].Instance.ID != "a" {
			t.Fatalf("srv1 after its instance came back: %+v", st.Desired.Slots[0])
		}
	})
}

func countPrefix(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}
