package sync

import (
	"fmt"
	"net/netip"

	"github.com/hapctl/hapctl/internal/runtime"
)

// OpKind is what an Op changes.
type OpKind uint8

// The runtime changes a plan is made of.
const (
	OpState OpKind = iota + 1
	OpAddr
	OpWeight
)

// Op is one runtime change to one slot.
type Op struct {
	Backend string
	Server  string
	Kind    OpKind
	State   runtime.State  // OpState
	Addr    netip.AddrPort // OpAddr
	Weight  int            // OpWeight
	// AfterAddr marks the state change that puts a re-addressed slot back in
	// service; it is sent only once the address change succeeded.
	AfterAddr bool
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
		if !ok {
			continue // not in the running HAProxy: nothing to send it
		}
		p.Ops = appendSlotOps(p.Ops, d.Backend, s, a)
	}
	return p
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
