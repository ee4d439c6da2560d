// Package sync turns Consul's view into HAProxy runtime commands:
// watch → desired state → plan → apply. Desire and MakePlan are pure
// functions; Apply and Loop do the I/O.
package sync

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// Override is an operator's drain or maint of one Consul instance. It wins
// over Consul's health until it is lifted.
type Override = consul.Override

// Input is everything the desired state of one backend depends on.
type Input struct {
	Backend  config.Backend
	Snapshot consul.Snapshot
	// Actual is every server of the backend as HAProxy reports it; the slot
	// servers among them (srv1..srvN) are the slots.
	Actual    []runtime.ServerState
	Overrides consul.Overrides // by Consul service ID
	// Expired lists the leaving slots whose removal_grace is over (the time
	// is up, or no session is left): they go to maint.
	Expired map[string]bool
	// Grow is the number of slots to add: new slots that do not exist in
	// HAProxy yet (Slot.New), numbered from the lowest free numbers and
	// offered to instances after the existing free slots.
	Grow int
}

// Slot is the desired state of one slot.
type Slot struct {
	Name string
	// Instance is the instance bound to the slot; nil when the slot is free.
	// Under the empty guard it is the endpoint HAProxy already has, with no ID.
	Instance *consul.Instance
	State    runtime.State
	Weight   int
	Override *Override
	// Leaving marks a slot whose instance left Consul's passing set and that
	// drains for removal_grace before it goes to maint. Its Instance is the
	// endpoint HAProxy has, with no ID.
	Leaving bool
	// New marks a slot that HAProxy does not have yet: it is added with
	// `add server` (dynamic growth).
	New bool
}

// Free reports whether no instance is bound to the slot.
func (s Slot) Free() bool { return s.Instance == nil }

// Desired is the desired state of one backend.
type Desired struct {
	Backend string
	Slots   []Slot
	// Unplaced are the instances no slot was left for.
	Unplaced []consul.Instance
	// Guarded is set when Consul reported no passing instance while HAProxy
	// still had some in service, and the empty guard kept them.
	Guarded bool
	// Freed counts slots in service that lose their instance now: they go to
	// maint in this sync and can take another instance from the next one.
	Freed int
	// Options are the backend's server_options, which new slots are added
	// with.
	Options string
}

// Bound counts the slots with an instance.
func (d Desired) Bound() int {
	n := 0
	for _, s := range d.Slots {
		if !s.Free() {
			n++
		}
	}
	return n
}

// Slots returns the slot servers among a backend's servers, by number.
func Slots(servers []runtime.ServerState) []runtime.ServerState {
	out := make([]runtime.ServerState, 0, len(servers))
	for _, s := range servers {
		if _, ok := slot.Index(s.Name); ok {
			out = append(out, s)
		}
	}
	byIndex := func(a, b runtime.ServerState) int {
		i, _ := slot.Index(a.Name)
		j, _ := slot.Index(b.Name)
		return i - j
	}
	if !slices.IsSortedFunc(out, byIndex) { // HAProxy lists them in order
		slices.SortFunc(out, byIndex)
	}
	return out
}

// Desire computes the desired state of one backend.
//
// Slots are sticky: an instance whose endpoint a slot already has keeps that
// slot, so the binding survives hapctl restarts without any state of its own.
// Other instances (by ID) take the lowest free slot that HAProxy already has
// in maint: a slot whose instance vanishes now goes to maint in this sync and
// takes a new instance only from the next one, so a slot never changes
// instance while it takes traffic. Instances left over are Unplaced.
func Desire(in Input) Desired {
	slots := Slots(in.Actual)
	d := Desired{Backend: in.Backend.Name, Slots: make([]Slot, len(slots), len(slots)+max(in.Grow, 0)),
		Options: in.Backend.ServerOptions}
	for i, s := range slots {
		d.Slots[i] = Slot{Name: s.Name, State: runtime.StateMaint}
	}
	guard := in.Backend.EmptyGuard && in.Snapshot.Passing == 0 && inService(slots)
	if in.Grow > 0 && !guard {
		have := make(map[int]bool, len(slots))
		for _, s := range slots {
			n, _ := slot.Index(s.Name)
			have[n] = true
		}
		for _, n := range slot.Missing(have, in.Grow) {
			name := slot.Name(n)
			d.Slots = append(d.Slots, Slot{Name: name, State: runtime.StateMaint, New: true})
			slots = append(slots, runtime.ServerState{Backend: in.Backend.Name, Name: name, Admin: runtime.AdminForcedMaint})
		}
	}
	if guard {
		d.Guarded = true
		for i, s := range slots {
			if s.State() != runtime.StateMaint && s.Addr.IsValid() {
				d.Slots[i].Instance = &consul.Instance{Addr: s.Addr, Port: s.Port, Weight: s.Weight}
				d.Slots[i].State = s.State()
				d.Slots[i].Weight = s.Weight
			}
		}
		return d
	}

	instances := withTags(in.Snapshot.Instances, in.Backend.Tags)
	byEndpoint := make(map[netip.AddrPort]int, len(instances))
	for j, inst := range instances {
		byEndpoint[inst.Endpoint()] = j
	}
	placed := make([]bool, len(instances))
	bind := func(i, j int) {
		inst := &instances[j] // shared with the snapshot: read-only
		placed[j] = true
		slot := &d.Slots[i]
		slot.Instance = inst
		slot.State = runtime.StateReady
		slot.Weight = inst.Weight
		if o, ok := in.Overrides[inst.ID]; ok && o.State.Valid() && o.State != runtime.StateReady {
			ov := o // only a real override escapes to the heap
			slot.State = ov.State
			slot.Override = &ov
		}
	}
	for i, s := range slots {
		if !s.Addr.IsValid() {
			continue
		}
		if j, ok := byEndpoint[netip.AddrPortFrom(s.Addr, uint16(s.Port))]; ok && !placed[j] {
			bind(i, j)
		}
	}
	free := make([]int, 0, len(slots))
	for i, s := range slots {
		switch {
		case !d.Slots[i].Free():
		case s.State() == runtime.StateMaint:
			free = append(free, i)
		case in.Backend.RemovalGrace > 0 && !in.Expired[s.Name] && s.Addr.IsValid():
			// Its instance left Consul's passing set: it drains at its
			// address until the grace is over.
			d.Slots[i] = Slot{Name: s.Name, Instance: &consul.Instance{Addr: s.Addr, Port: s.Port, Weight: s.Weight},
				State: runtime.StateDrain, Weight: s.Weight, Leaving: true}
		default:
			d.Freed++
		}
	}
	for j, inst := range instances {
		if placed[j] {
			continue
		}
		if len(free) == 0 {
			d.Unplaced = append(d.Unplaced, inst)
			continue
		}
		bind(free[0], j)
		free = free[1:]
	}
	return d
}

// withTags keeps the instances that carry every tag, sorted by ID. Consul
// already filters by tag and FromEntries sorts; this keeps Desire a function
// of its inputs alone, whatever their order.
func withTags(instances []consul.Instance, tags []string) []consul.Instance {
	byID := func(a, b consul.Instance) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Node, b.Node))
	}
	if !slices.IsSortedFunc(instances, byID) {
		instances = slices.Clone(instances)
		slices.SortFunc(instances, byID)
	}
	if len(tags) == 0 {
		return instances
	}
	out := make([]consul.Instance, 0, len(instances))
	for _, inst := range instances {
		if hasAll(inst.Tags, tags) {
			out = append(out, inst)
		}
	}
	return out
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func inService(slots []runtime.ServerState) bool {
	for _, s := range slots {
		if s.State() != runtime.StateMaint {
			return true
		}
	}
	return false
}
