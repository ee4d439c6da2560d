package sync

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// OpKind is what an Op changes.
type OpKind uint8

// The runtime changes a plan is made of.
const (
	OpState OpKind = iota + 1
	OpAddr
	OpWeight
	OpAdd    // add server (dynamic growth), with Addr, Weight and Options
	OpHealth // enable health of a new slot
	OpAgent  // enable agent of a new slot
	OpDel    // del server (dynamic shrink)
)

// Op is one runtime change to one slot.
type Op struct {
	Backend string
	Server  string
	Kind    OpKind
	State   runtime.State  // OpState
	Addr    netip.AddrPort // OpAddr
	Weight  int            // OpWeight, OpAdd
	Options string         // OpAdd
	// AfterAddr marks the state change that puts a re-addressed slot back in
	// service; it is sent only once the address change succeeded. (For a new
	// slot: once `add server` succeeded.)
	AfterAddr bool
	// Soft marks an op that HAProxy may put off without it being a sync
	// failure: `del server` of a slot that still has connections (or is
	// gone already) is tried again later.
	Soft bool
}

// Command builds the runtime command, validating every value again.
func (o Op) Command() (runtime.Command, error) {
	switch o.Kind {
	case OpState:
		return runtime.SetState(o.Backend, o.Server, o.State)
	case OpAddr:
		return runtime.SetAddr(o.Backend, o.Server, o.Addr.Addr(), int(o.Addr.Port()))
	case OpWeight:
		return runtime.SetWeight(o.Backend, o.Server, o.Weight)
	case OpAdd:
		return runtime.AddServer(o.Backend, o.Server, o.Addr, o.Weight, o.Options)
	case OpHealth:
		return runtime.EnableHealth(o.Backend, o.Server)
	case OpAgent:
		return runtime.EnableAgent(o.Backend, o.Server)
	case OpDel:
		return runtime.DelServer(o.Backend, o.Server)
	}
	return runtime.Command{}, fmt.Errorf("op of unknown kind %d", o.Kind)
}

// String is the command the op sends.
func (o Op) String() string {
	c, err := o.Command()
	if err != nil {
		return fmt.Sprintf("invalid op on %s/%s: %v", o.Backend, o.Server, err)
	}
	return c.String()
}

// Plan is what it takes to bring one backend to its desired state.
type Plan struct {
	Backend  string
	Ops      []Op
	Unplaced int
	Guarded  bool
}

// MakePlan diffs the desired state against HAProxy's actual servers. A slot
// that changes instance goes to maint before its address changes, and comes
// back only after. Nothing to change gives no ops.
func MakePlan(d Desired, actual []runtime.ServerState) Plan {
	p := Plan{Backend: d.Backend, Unplaced: len(d.Unplaced), Guarded: d.Guarded}
	byName := make(map[string]*runtime.ServerState, len(actual))
	for i := range actual {
		byName[actual[i].Name] = &actual[i]
	}
	for _, s := range d.Slots {
		a, ok := byName[s.Name]
		switch {
		case ok:
			p.Ops = appendSlotOps(p.Ops, d.Backend, s, a)
		case s.New:
			p.Ops = appendNewSlotOps(p.Ops, d.Backend, d.Options, s)
		}
		// Otherwise the slot is not in the running HAProxy: nothing to send it.
	}
	return p
}

// appendNewSlotOps adds a slot with `add server`: bound to its instance
// when it has one, else free on the placeholder. A new server starts in
// maint and its checks must be enabled (default-server is not inherited, so
// options carries everything); only once it exists does it go in service.
func appendNewSlotOps(ops []Op, backend, options string, s Slot) []Op {
	add := Op{Backend: backend, Server: s.Name, Kind: OpAdd, Addr: slot.PlaceholderEndpoint, Weight: 1, Options: options}
	if !s.Free() {
		add.Addr, add.Weight = s.Instance.Endpoint(), s.Weight
	}
	ops = append(ops, add)
	words := strings.Fields(options)
	if slices.Contains(words, "check") {
		ops = append(ops, Op{Backend: backend, Server: s.Name, Kind: OpHealth, AfterAddr: true})
	}
	if slices.Contains(words, "agent-check") {
		ops = append(ops, Op{Backend: backend, Server: s.Name, Kind: OpAgent, AfterAddr: true})
	}
	if !s.Free() && s.State != runtime.StateMaint {
		ops = append(ops, Op{Backend: backend, Server: s.Name, Kind: OpState, State: s.State, AfterAddr: true})
	}
	return ops
}

// DelOps returns the ops that delete the named slots, the highest first:
// `del server` of free slots in maint (dynamic shrink). A slot that still
// has connections refuses and is tried again later.
func DelOps(backend string, names []string) []Op {
	ops := make([]Op, 0, len(names))
	for _, n := range names {
		ops = append(ops, Op{Backend: backend, Server: n, Kind: OpDel, Soft: true})
	}
	slices.SortFunc(ops, func(a, b Op) int {
		i, _ := slot.Index(a.Server)
		j, _ := slot.Index(b.Server)
		return j - i
	})
	return ops
}

func appendSlotOps(ops []Op, backend string, s Slot, a *runtime.ServerState) []Op {
	op := func(o Op) Op {
		o.Backend, o.Server = backend, s.Name
		return o
	}
	cur := a.State()
	if s.Free() {
		if cur != runtime.StateMaint {
			ops = append(ops, op(Op{Kind: OpState, State: runtime.StateMaint}))
		}
		return ops
	}
	ep := s.Instance.Endpoint()
	moved := !a.Addr.IsValid() || a.Addr != ep.Addr() || a.Port != int(ep.Port())
	if moved {
		if cur != runtime.StateMaint {
			ops = append(ops, op(Op{Kind: OpState, State: runtime.StateMaint}))
			cur = runtime.StateMaint
		}
		ops = append(ops, op(Op{Kind: OpAddr, Addr: ep}))
	}
	if a.Weight != s.Weight {
		ops = append(ops, op(Op{Kind: OpWeight, Weight: s.Weight}))
	}
	if cur != s.State {
		ops = append(ops, op(Op{Kind: OpState, State: s.State, AfterAddr: moved}))
	}
	return ops
}
