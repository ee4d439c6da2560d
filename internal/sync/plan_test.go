package sync

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

const (
	ready = runtime.StateReady
	drain = runtime.StateDrain
	maint = runtime.StateMaint
)

// srv is a slot as HAProxy reports it; "disabled" in the config is kept as
// the 0x04 bit, as a real HAProxy does.
func srv(name, addr string, port, weight int, st runtime.State) runtime.ServerState {
	flags := runtime.AdminConfigMaint
	switch st {
	case maint:
		flags |= runtime.AdminForcedMaint
	case drain:
		flags |= runtime.AdminForcedDrain
	}
	s := runtime.ServerState{Backend: "be_web", Name: name, Port: port, Weight: weight, Admin: flags}
	s.Addr, _ = netip.ParseAddr(addr)
	return s
}

func free(name string) runtime.ServerState { return srv(name, "127.0.0.1", 1, 1, maint) }

func inst(id, addr string, port, weight int, tags ...string) consul.Instance {
	return consul.Instance{ID: id, Node: "n1", Addr: netip.MustParseAddr(addr), Port: port, Weight: weight, Tags: tags}
}

func ep(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func stateOp(server string, st runtime.State) Op {
	return Op{Backend: "be_web", Server: server, Kind: OpState, State: st}
}

func addrOp(server, addrPort string) Op {
	return Op{Backend: "be_web", Server: server, Kind: OpAddr, Addr: ep(addrPort)}
}

func weightOp(server string, w int) Op {
	return Op{Backend: "be_web", Server: server, Kind: OpWeight, Weight: w}
}

func commit(server string, st runtime.State) Op {
	o := stateOp(server, st)
	o.AfterAddr = true
	return o
}

func backend() config.Backend {
	return config.Backend{Name: "be_web", Service: "web", MinSlots: 3, MaxSlots: 8, EmptyGuard: true}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	a := inst("a", "10.0.0.1", 80, 1)
	b := inst("b", "10.0.0.2", 80, 1)
	c := inst("c", "10.0.0.3", 80, 1)
	d := inst("d", "10.0.0.4", 80, 1)
	tests := []struct {
		name      string
		backend   func(*config.Backend)
		instances []consul.Instance
		passing   int // Consul's raw count; -1: len(instances)
		overrides map[string]Override
		actual    []runtime.ServerState
		want      []Op
		unplaced  int
		guarded   bool
		freed     int
		next      []Op // the second sync's ops, when the first leaves work
	}{
		{
			name:      "no change, no ops",
			instances: []consul.Instance{a, b},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready), free("srv3")},
		},
		{
			name:      "bootstrap: free slots fill in ID order",
			instances: []consul.Instance{b, a},
			actual:    []runtime.ServerState{free("srv1"), free("srv2"), free("srv3")},
			want: []Op{
				addrOp("srv1", "10.0.0.1:80"), commit("srv1", ready),
				addrOp("srv2", "10.0.0.2:80"), commit("srv2", ready),
			},
		},
		{
			name:      "sticky: each keeps its slot whatever the order",
			instances: []consul.Instance{a, b, c},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.3", 80, 1, ready), free("srv2"), srv("srv3", "10.0.0.1", 80, 1, ready)},
			want:      []Op{addrOp("srv2", "10.0.0.2:80"), commit("srv2", ready)},
		},
		{
			name:      "vanished instance: slot to maint, address kept",
			instances: []consul.Instance{a},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready), free("srv3")},
			want:      []Op{stateOp("srv2", maint)},
			freed:     1,
		},
		{
			name:      "returning instance finds its old maint slot",
			instances: []consul.Instance{a, b},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, maint), free("srv3")},
			want:      []Op{stateOp("srv2", ready)},
		},
		{
			name:      "new instance takes a maint slot, not one freed now",
			instances: []consul.Instance{a, d},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready), free("srv3")},
			want:      []Op{stateOp("srv2", maint), addrOp("srv3", "10.0.0.4:80"), commit("srv3", ready)},
			freed:     1,
		},
		{
			name:      "a slot in service goes to maint, and takes a new instance only in the next sync",
			instances: []consul.Instance{a, d},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready)},
			want:      []Op{stateOp("srv2", maint)},
			unplaced:  1,
			freed:     1,
			next:      []Op{addrOp("srv2", "10.0.0.4:80"), commit("srv2", ready)},
		},
		{
			name:      "a drained slot is not re-bound while it drains",
			instances: []consul.Instance{d},
			passing:   1,
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, drain)},
			want:      []Op{stateOp("srv1", maint)},
			unplaced:  1,
			freed:     1,
			next:      []Op{addrOp("srv1", "10.0.0.4:80"), commit("srv1", ready)},
		},
		{
			name:      "over capacity: the highest IDs are unplaced",
			instances: []consul.Instance{a, b, c, d},
			actual:    []runtime.ServerState{free("srv1"), free("srv2"), free("srv3")},
			want: []Op{
				addrOp("srv1", "10.0.0.1:80"), commit("srv1", ready),
				addrOp("srv2", "10.0.0.2:80"), commit("srv2", ready),
				addrOp("srv3", "10.0.0.3:80"), commit("srv3", ready),
			},
			unplaced: 1,
		},
		{
			name:      "weights follow Consul",
			instances: []consul.Instance{inst("a", "10.0.0.1", 80, 50), inst("b", "10.0.0.2", 80, 0)},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), free("srv2"), free("srv3")},
			want:      []Op{weightOp("srv1", 50), addrOp("srv2", "10.0.0.2:80"), weightOp("srv2", 0), commit("srv2", ready)},
		},
		{
			name:      "port change of the same address is another instance",
			instances: []consul.Instance{inst("a", "10.0.0.1", 81, 1)},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready)},
			want:      []Op{stateOp("srv1", maint)},
			unplaced:  1,
			freed:     1,
			next:      []Op{addrOp("srv1", "10.0.0.1:81"), commit("srv1", ready)},
		},
		{
			name:      "ipv6 instance",
			instances: []consul.Instance{inst("v6", "2001:db8::1", 443, 1)},
			actual:    []runtime.ServerState{free("srv1")},
			want:      []Op{addrOp("srv1", "[2001:db8::1]:443"), commit("srv1", ready)},
		},
		{
			name:      "tags: an instance without every tag is not placed",
			backend:   func(b *config.Backend) { b.Tags = []string{"prod", "v2"} },
			instances: []consul.Instance{inst("a", "10.0.0.1", 80, 1, "prod"), inst("b", "10.0.0.2", 80, 1, "v2", "prod", "x")},
			actual:    []runtime.ServerState{free("srv1"), free("srv2")},
			want:      []Op{addrOp("srv1", "10.0.0.2:80"), commit("srv1", ready)},
		},
		{
			name:      "operator drain and maint win over health",
			instances: []consul.Instance{a, b, c},
			overrides: map[string]Override{"a": {State: drain, Reason: "deploy"}, "c": {State: maint}},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready), free("srv3")},
			want:      []Op{stateOp("srv1", drain), addrOp("srv3", "10.0.0.3:80")},
		},
		{
			name:      "lifting a drain",
			instances: []consul.Instance{a},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, drain)},
			want:      []Op{stateOp("srv1", ready)},
		},
		{
			name:      "free slot left ready by hand goes back to maint",
			instances: nil,
			passing:   0,
			backend:   func(b *config.Backend) { b.EmptyGuard = false },
			actual:    []runtime.ServerState{srv("srv1", "127.0.0.1", 1, 1, ready)},
			want:      []Op{stateOp("srv1", maint)},
			freed:     1,
		},
		{
			name:    "empty guard keeps the last set when Consul says zero",
			passing: 0,
			actual:  []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, drain), free("srv3")},
			guarded: true,
		},
		{
			name:    "empty guard off: zero passing empties the backend",
			backend: func(b *config.Backend) { b.EmptyGuard = false },
			passing: 0,
			actual:  []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, drain), free("srv3")},
			want:    []Op{stateOp("srv1", maint), stateOp("srv2", maint)},
			freed:   2,
		},
		{
			name:      "empty guard does not hold when only invalid instances pass",
			instances: nil,
			passing:   2,
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready)},
			want:      []Op{stateOp("srv1", maint)},
			freed:     1,
		},
		{
			name:      "other servers of the backend are not touched",
			instances: []consul.Instance{a},
			actual: []runtime.ServerState{srv("backup", "10.9.9.9", 80, 1, ready), srv("srv01", "10.9.9.8", 80, 1, ready),
				free("srv1"), srv("static", "10.9.9.7", 80, 1, maint)},
			want: []Op{addrOp("srv1", "10.0.0.1:80"), commit("srv1", ready)},
		},
		{
			name:      "slot whose address HAProxy cannot show is re-addressed",
			instances: []consul.Instance{a},
			actual:    []runtime.ServerState{{Backend: "be_web", Name: "srv1", Port: 80, Weight: 1, Admin: runtime.AdminForcedMaint}},
			want:      []Op{addrOp("srv1", "10.0.0.1:80"), commit("srv1", ready)},
		},
		{
			name:      "slots are ordered by number, not by name",
			instances: []consul.Instance{a},
			actual:    []runtime.ServerState{free("srv10"), free("srv9"), free("srv2")},
			want:      []Op{addrOp("srv2", "10.0.0.1:80"), commit("srv2", ready)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			be := backend()
			if tt.backend != nil {
				tt.backend(&be)
			}
			passing := tt.passing
			if passing == 0 && len(tt.instances) > 0 {
				passing = len(tt.instances)
			}
			d := Desire(Input{Backend: be, Snapshot: consul.Snapshot{Instances: tt.instances, Passing: passing}, Actual: tt.actual, Overrides: tt.overrides})
			p := MakePlan(d, tt.actual)
			if !reflect.DeepEqual(p.Ops, tt.want) {
				t.Errorf("ops:\n got  %s\n want %s", opsString(p.Ops), opsString(tt.want))
			}
			if p.Unplaced != tt.unplaced || p.Guarded != tt.guarded || d.Freed != tt.freed {
				t.Errorf("unplaced %d guarded %v freed %d, want %d %v %d", p.Unplaced, p.Guarded, d.Freed, tt.unplaced, tt.guarded, tt.freed)
			}
			// Applying the plans must reach a fixed point within two syncs.
			after := applyToState(t, tt.actual, p.Ops)
			d2 := Desire(Input{Backend: be, Snapshot: consul.Snapshot{Instances: tt.instances, Passing: passing}, Actual: after, Overrides: tt.overrides})
			p2 := MakePlan(d2, after)
			if !reflect.DeepEqual(p2.Ops, tt.next) {
				t.Errorf("second sync:\n got  %s\n want %s", opsString(p2.Ops), opsString(tt.next))
			}
			after = applyToState(t, after, p2.Ops)
			d3 := Desire(Input{Backend: be, Snapshot: consul.Snapshot{Instances: tt.instances, Passing: passing}, Actual: after, Overrides: tt.overrides})
			if again := MakePlan(d3, after); len(again.Ops) != 0 {
				t.Errorf("not a fixed point, third plan: %s", opsString(again.Ops))
			}
		})
	}
}

func TestPlanGrowth(t *testing.T) {
	t.Parallel()
	a := inst("a", "10.0.0.1", 80, 1)
	b := inst("b", "10.0.0.2", 80, 1)
	c := inst("c", "10.0.0.3", 80, 5)
	d := inst("d", "10.0.0.4", 80, 1)
	full := []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), srv("srv2", "10.0.0.2", 80, 1, ready)}
	add := func(server, addrPort string, w int, opts string) Op {
		return Op{Backend: "be_web", Server: server, Kind: OpAdd, Addr: ep(addrPort), Weight: w, Options: opts}
	}
	after := func(server string, k OpKind) Op {
		return Op{Backend: "be_web", Server: server, Kind: k, AfterAddr: true}
	}
	tests := []struct {
		name      string
		options   string
		instances []consul.Instance
		passing   int
		actual    []runtime.ServerState
		grow      int
		want      []Op
		unplaced  int
	}{
		{
			name:      "new slots bound at once",
			instances: []consul.Instance{a, b, c, d},
			actual:    full,
			grow:      2,
			want: []Op{
				add("srv3", "10.0.0.3:80", 5, ""), commit("srv3", ready),
				add("srv4", "10.0.0.4:80", 1, ""), commit("srv4", ready),
			},
		},
		{
			name:      "checks enabled, extra slots added free",
			options:   "check inter 2s agent-check agent-port 9",
			instances: []consul.Instance{a, b, c},
			actual:    full,
			grow:      2,
			want: []Op{
				add("srv3", "10.0.0.3:80", 5, "check inter 2s agent-check agent-port 9"),
				after("srv3", OpHealth), after("srv3", OpAgent), commit("srv3", ready),
				add("srv4", "127.0.0.1:1", 1, "check inter 2s agent-check agent-port 9"),
				after("srv4", OpHealth), after("srv4", OpAgent),
			},
		},
		{
			name:      "existing free slots first, gaps filled",
			instances: []consul.Instance{a, b, c, d},
			actual:    []runtime.ServerState{srv("srv1", "10.0.0.1", 80, 1, ready), free("srv3")},
			grow:      2,
			want: []Op{
				addrOp("srv3", "10.0.0.2:80"), commit("srv3", ready),
				add("srv2", "10.0.0.3:80", 5, ""), commit("srv2", ready),
				add("srv4", "10.0.0.4:80", 1, ""), commit("srv4", ready),
			},
		},
		{
			name:      "too few new slots leave the rest unplaced",
			instances: []consul.Instance{a, b, c, d},
			actual:    full,
			grow:      1,
			want:      []Op{add("srv3", "10.0.0.3:80", 5, ""), commit("srv3", ready)},
			unplaced:  1,
		},
		{
			name:    "no growth under the empty guard",
			passing: 0,
			actual:  full,
			grow:    2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			be := backend()
			be.ServerOptions = tt.options
			passing := len(tt.instances)
			in := Input{Backend: be, Snapshot: consul.Snapshot{Instances: tt.instances, Passing: passing}, Actual: tt.actual, Grow: tt.grow}
			d := Desire(in)
			p := MakePlan(d, tt.actual)
			if !reflect.DeepEqual(p.Ops, tt.want) {
				t.Errorf("ops:\n got  %s\n want %s", opsString(p.Ops), opsString(tt.want))
			}
			if p.Unplaced != tt.unplaced {
				t.Errorf("unplaced %d, want %d", p.Unplaced, tt.unplaced)
			}
			// Once applied, the next sync (without growth) has nothing to do.
			state := applyToState(t, tt.actual, p.Ops)
			in.Actual, in.Grow = state, 0
			if again := MakePlan(Desire(in), state); len(again.Ops) != 0 {
				t.Errorf("not a fixed point, next plan: %s", opsString(again.Ops))
			}
		})
	}
}

func TestDelOps(t *testing.T) {
	t.Parallel()
	got := opsString(DelOps("be_web", []string{"srv9", "srv12", "srv10"}))
	want := "[del server be_web/srv12; del server be_web/srv10; del server be_web/srv9]"
	if got != want {
		t.Fatalf("DelOps = %s, want %s", got, want)
	}
	for _, o := range DelOps("be_web", []string{"srv9"}) {
		if !o.Soft {
			t.Fatalf("del op %s is not soft: a busy slot would fail the sync", o)
		}
	}
}

// applyToState simulates HAProxy applying ops, to check plans converge.
func applyToState(t *testing.T, actual []runtime.ServerState, ops []Op) []runtime.ServerState {
	t.Helper()
	out := append([]runtime.ServerState(nil), actual...)
	for _, o := range ops {
		if _, err := o.Command(); err != nil {
			t.Fatalf("op %+v builds no command: %v", o, err)
		}
		switch o.Kind {
		case OpAdd:
			for _, s := range out {
				if s.Name == o.Server {
					t.Fatalf("add server %s, which exists", o.Server)
				}
			}
			out = append(out, runtime.ServerState{Backend: o.Backend, Name: o.Server, Addr: o.Addr.Addr(), Port: int(o.Addr.Port()),
				Weight: o.Weight, Admin: runtime.AdminForcedMaint})
			continue
		case OpDel:
			out = slices.DeleteFunc(out, func(s runtime.ServerState) bool {
				if s.Name == o.Server && s.State() != maint {
					t.Fatalf("del server %s in state %s", s.Name, s.State())
				}
				return s.Name == o.Server
			})
			continue
		}
		for i := range out {
			if out[i].Name != o.Server {
				continue
			}
			s := &out[i]
			switch o.Kind {
			case OpAddr:
				if s.State() != maint {
					t.Fatalf("%s re-addressed while %s", s.Name, s.State())
				}
				s.Addr, s.Port = o.Addr.Addr(), int(o.Addr.Port())
			case OpWeight:
				s.Weight = o.Weight
			case OpState:
				s.Admin &^= runtime.AdminForcedMaint | runtime.AdminForcedDrain
				switch o.State {
				case maint:
					s.Admin |= runtime.AdminForcedMaint
				case drain:
					s.Admin |= runtime.AdminForcedDrain
				}
			}
		}
	}
	return out
}

func opsString(ops []Op) string {
	s := "["
	for i, o := range ops {
		if i > 0 {
			s += "; "
		}
		s += o.String()
		if o.AfterAddr {
			s += " (after addr)"
		}
	}
	return s + "]"
}

// TestFromConsulToPlan runs the whole pure path from Consul's JSON entries:
// node-address fallback, hostile entries skipped, the rest placed.
func TestFromConsulToPlan(t *testing.T) {
	t.Parallel()
	entries := []*api.ServiceEntry{
		{Node: &api.Node{Node: "n1", Address: "10.0.0.1"}, Service: &api.AgentService{ID: "web-1", Port: 8080}},
		{Node: &api.Node{Node: "n2", Address: "10.0.0.2"}, Service: &api.AgentService{ID: "web-2", Address: "10.0.2.2", Port: 8080, Weights: api.AgentWeights{Passing: 3}}},
		{Node: &api.Node{Node: "n3", Address: "10.0.0.3"}, Service: &api.AgentService{ID: "evil", Address: "10.0.0.3;shutdown sessions server be_web/srv1", Port: 8080}},
	}
	valid, invalid := consul.FromEntries(entries)
	actual := []runtime.ServerState{free("srv1"), free("srv2"), free("srv3")}
	d := Desire(Input{Backend: backend(), Snapshot: consul.Snapshot{Instances: valid, Invalid: invalid, Passing: len(entries)}, Actual: actual})
	got := opsString(MakePlan(d, actual).Ops)
	want := opsString([]Op{
		addrOp("srv1", "10.0.0.1:8080"), commit("srv1", ready),
		addrOp("srv2", "10.0.2.2:8080"), weightOp("srv2", 3), commit("srv2", ready),
	})
	if got != want || len(invalid) != 1 {
		t.Fatalf("ops %s\nwant %s\ninvalid %v", got, want, invalid)
	}
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("slots=%d", n), func(b *testing.B) {
			instances := make([]consul.Instance, n)
			actual := make([]runtime.ServerState, n)
			for i := range instances {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				instances[i] = consul.Instance{ID: fmt.Sprintf("web-%06d", i), Addr: a, Port: 8080, Weight: 1}
				// Every slot bound already, in a shuffled order, and one change: the steady state.
				j := (i * 7919) % n
				actual[j] = runtime.ServerState{Backend: "be_web", Name: slot.Name(j + 1), Addr: a, Port: 8080, Weight: 1}
			}
			instances[n/2].Weight = 5 // the one change: a weight
			be := backend()
			snap := consul.Snapshot{Instances: instances, Passing: n}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d := Desire(Input{Backend: be, Snapshot: snap, Actual: actual})
				p := MakePlan(d, actual)
				if len(p.Ops) != 1 || p.Ops[0].Kind != OpWeight {
					b.Fatalf("ops: %s", opsString(p.Ops))
				}
			}
		})
	}
}
