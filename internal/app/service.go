package app

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/config"
	hconsul "github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/sync"
)

// applyWait is how long a drain call waits for this node's HAProxy to have
// the change before it answers 202 instead of 200.
const applyWait = 3 * time.Second

// service implements api.Service on the daemon's loop, store and clients.
type service struct {
	cfg    *config.Config
	loop   *sync.Loop
	store  *hconsul.Store
	rt     sync.Runtime
	drains hconsul.DrainKV
	byName map[string]config.Backend
	wait   time.Duration // 0: applyWait
}

var _ api.Service = (*service)(nil)

func newService(cfg *config.Config, loop *sync.Loop, store *hconsul.Store, rt sync.Runtime, drains hconsul.DrainKV) *service {
	s := &service{cfg: cfg, loop: loop, store: store, rt: rt, drains: drains, byName: map[string]config.Backend{}}
	for _, b := range cfg.Backends {
		s.byName[b.Name] = b
	}
	return s
}

func (s *service) Backends(ctx context.Context) ([]api.Backend, error) {
	names := make([]string, len(s.cfg.Backends))
	for i, b := range s.cfg.Backends {
		names[i] = b.Name
	}
	actual, err := s.read(ctx, names...)
	if err != nil {
		return nil, err
	}
	status, errs := s.loop.Status(), s.store.Errors()
	out := make([]api.Backend, 0, len(names))
	for _, b := range s.cfg.Backends {
		out = append(out, s.view(b, actual, status, errs))
	}
	return out, nil
}

func (s *service) Backend(ctx context.Context, name string) (api.Backend, error) {
	b, err := s.managed(name)
	if err != nil {
		return api.Backend{}, err
	}
	actual, err := s.read(ctx, name)
	if err != nil {
		return api.Backend{}, err
	}
	return s.view(b, actual, s.loop.Status(), s.store.Errors()), nil
}

func (s *service) managed(name string) (config.Backend, error) {
	b, ok := s.byName[name]
	if !ok {
		names := make([]string, 0, len(s.byName))
		for n := range s.byName {
			names = append(names, n)
		}
		slices.Sort(names)
		return config.Backend{}, api.NotFound("no managed backend %s (hapctl manages %s)", strconv.Quote(hconsul.Clip(name)), strings.Join(names, ", "))
	}
	return b, nil
}

// readTimeout bounds an API call's read of HAProxy: a socket that hangs
// answers 503 in this time.
const readTimeout = 2 * time.Second

func (s *service) read(ctx context.Context, names ...string) (sync.Actual, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	actual, err := sync.ReadActual(ctx, s.rt, names)
	if err != nil {
		return sync.Actual{}, api.Unavailable("haproxy does not answer on %s: %v", s.cfg.HAProxy.RuntimeSocket, err)
	}
	return actual, nil
}

// binding is what one backend's slots are bound to, by endpoint, the way
// the sync loop binds them.
type binding struct {
	slots     []runtime.ServerState
	instances []hconsul.Instance
	bySlot    map[string]*hconsul.Instance // slot name → instance
	slotOf    map[string]string            // service ID → slot name
}

func bind(servers []runtime.ServerState, snap hconsul.Snapshot) binding {
	bd := binding{slots: sync.Slots(servers), instances: snap.Instances,
		bySlot: map[string]*hconsul.Instance{}, slotOf: map[string]string{}}
	byEndpoint := make(map[netip.AddrPort]int, len(snap.Instances))
	for i, inst := range snap.Instances {
		byEndpoint[inst.Endpoint()] = i
	}
	for _, sl := range bd.slots {
		if !sl.Addr.IsValid() {
			continue
		}
		i, ok := byEndpoint[netip.AddrPortFrom(sl.Addr, uint16(sl.Port))]
		if !ok {
			continue
		}
		inst := &snap.Instances[i]
		if _, taken := bd.slotOf[inst.ID]; taken {
			continue
		}
		bd.bySlot[sl.Name] = inst
		bd.slotOf[inst.ID] = sl.Name
	}
	return bd
}

func (s *service) view(b config.Backend, actual sync.Actual, status sync.Status, consulErrs map[string]error) api.Backend {
	v := api.Backend{Name: b.Name, Service: b.Service, Tags: b.Tags, Growth: b.Growth,
		Slots: []api.Slot{}, Unplaced: []string{}, Invalid: []api.Invalid{}, Drains: []api.Drain{}}
	st, synced := status.Backends[b.Name]
	if synced {
		v.Growth, v.GrowthNote, v.Guarded = st.Growth, st.GrowthWhy, st.Desired.Guarded
		if st.Err == nil {
			at := st.At
			v.LastSync = &at
		}
	}
	snap, answered := s.store.Snapshot(b.Name)
	overrides, _ := s.store.Overrides(b.Name)
	var errs []string
	switch {
	case actual.Errs[b.Name] != nil:
		errs = append(errs, actual.Errs[b.Name].Error())
	case st.Err != nil:
		errs = append(errs, "last sync failed: "+st.Err.Error())
	}
	if err := consulErrs[b.Name]; err != nil {
		errs = append(errs, "consul query failed: "+err.Error())
	}
	if !answered {
		errs = append(errs, "no answer from consul yet")
	}
	v.Error = strings.Join(errs, "; ")
	v.ConsulIndex = snap.Index
	bd := bind(actual.Servers[b.Name], snap)
	leaving := map[string]bool{}
	for _, sl := range st.Desired.Slots {
		if sl.Leaving {
			leaving[sl.Name] = true
		}
	}
	for _, sl := range bd.slots {
		vs := api.Slot{Name: sl.Name, Address: addrString(sl.Addr), Port: sl.Port, Weight: sl.Weight,
			AdminState: sl.State().String(), OperState: sl.Op.String()}
		if inst := bd.bySlot[sl.Name]; inst != nil {
			vs.ServiceID, vs.Node = inst.ID, inst.Node
			if o, ok := overrides[inst.ID]; ok {
				vs.Override = overrideView(o)
			}
		} else {
			vs.Free = sl.State() == runtime.StateMaint
			vs.Leaving = !vs.Free && leaving[sl.Name]
		}
		v.Slots = append(v.Slots, vs)
	}
	for _, inst := range snap.Instances {
		if _, ok := bd.slotOf[inst.ID]; !ok {
			v.Unplaced = append(v.Unplaced, inst.ID)
		}
	}
	for _, inv := range snap.Invalid {
		v.Invalid = append(v.Invalid, api.Invalid{ServiceID: inv.ID, Node: inv.Node, Reason: inv.Reason})
	}
	ids := make([]string, 0, len(overrides))
	for id := range overrides {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v.Drains = append(v.Drains, api.Drain{ServiceID: id, Server: bd.slotOf[id], Override: *overrideView(overrides[id])})
	}
	return v
}

func overrideView(o hconsul.Override) *api.Override {
	return &api.Override{State: o.State.String(), Reason: o.Reason, By: o.By, At: o.At}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// target is the instance a drain, maint or undrain is for.
type target struct {
	id       string
	slot     string // "" when the instance has no slot
	endpoint string
}

// resolve finds the instance SERVER names: a slot name, an instance's
// address:port, or a Consul service ID (for undrain, also the ID of a drain
// whose instance is gone).
func resolve(b string, server, action string, bd binding, overrides hconsul.Overrides) (target, error) {
	if _, ok := slot.Index(server); ok {
		i := slices.IndexFunc(bd.slots, func(s runtime.ServerState) bool { return s.Name == server })
		if i < 0 {
			return target{}, api.NotFound("backend %s has no server %s (it has %d slots)", b, server, len(bd.slots))
		}
		sl := bd.slots[i]
		inst := bd.bySlot[server]
		switch {
		case inst != nil:
			return target{id: inst.ID, slot: server, endpoint: inst.Endpoint().String()}, nil
		case sl.State() == runtime.StateMaint:
			return target{}, api.Conflict("server %s of %s is free: nothing to %s", server, b, action)
		}
		return target{}, api.Conflict("server %s of %s has no passing instance in consul (it is leaving, or the empty guard keeps it): nothing to %s", server, b, action)
	}
	if ep, err := netip.ParseAddrPort(server); err == nil {
		ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
		for _, inst := range bd.instances {
			if inst.Endpoint() == ep {
				return target{id: inst.ID, slot: bd.slotOf[inst.ID], endpoint: ep.String()}, nil
			}
		}
		return target{}, api.NotFound("backend %s has no passing instance at %s", b, ep)
	}
	if hconsul.ValidID(server) == nil {
		for _, inst := range bd.instances {
			if inst.ID == server {
				return target{id: inst.ID, slot: bd.slotOf[inst.ID], endpoint: inst.Endpoint().String()}, nil
			}
		}
		if _, ok := overrides[server]; ok && action == api.ActionUndrain {
			return target{id: server}, nil
		}
	}
	return target{}, api.NotFound("backend %s has no server %s: give a slot name (srv3), an instance address (10.0.0.5:8080) or the consul service ID of a passing instance",
		b, strconv.Quote(hconsul.Clip(server)))
}

func (s *service) Override(ctx context.Context, req api.OverrideRequest) (api.OverrideResult, error) {
	b, err := s.managed(req.Backend)
	if err != nil {
		return api.OverrideResult{}, err
	}
	actual, err := s.read(ctx, b.Name)
	if err != nil {
		return api.OverrideResult{}, err
	}
	if err := actual.Errs[b.Name]; err != nil {
		return api.OverrideResult{}, api.Unavailable("%v", err)
	}
	snap, ok := s.store.Snapshot(b.Name)
	overrides, loaded := s.store.Overrides(b.Name)
	if !ok || !loaded {
		return api.OverrideResult{}, api.Unavailable("hapctl has no answer from consul yet for %s: try again", b.Name)
	}
	t, err := resolve(b.Name, req.Server, req.Action, bind(actual.Servers[b.Name], snap), overrides)
	if err != nil {
		return api.OverrideResult{}, err
	}
	res := api.OverrideResult{Backend: b.Name, Server: t.slot, ServiceID: t.id, Address: t.endpoint, Action: req.Action}
	var want *hconsul.Override
	switch req.Action {
	case api.ActionDrain, api.ActionMaint:
		state, _ := runtime.ParseState(req.Action)
		o := hconsul.Override{State: state, Reason: req.Reason, By: req.By, At: time.Now().UTC().Truncate(time.Millisecond)}
		if err := o.Validate(); err != nil {
			return api.OverrideResult{}, &api.Error{Status: 400, Err: err}
		}
		if err := s.drains.Put(ctx, b.Name, t.id, o); err != nil {
			return api.OverrideResult{}, api.Unavailable("the %s was not stored, nothing changed: %v", req.Action, err)
		}
		want = &o
		res.State, res.Reason, res.By, res.At = req.Action, o.Reason, o.By, &o.At
	case api.ActionUndrain:
		// Consul, not this node's copy, says whether there is one: it may
		// have been set through another node a moment ago.
		has, err := s.drains.Has(ctx, b.Name, t.id)
		if err != nil {
			return api.OverrideResult{}, api.Unavailable("the undrain was not stored, nothing changed: %v", err)
		}
		if !has {
			what := "instance " + t.id
			if t.slot != "" {
				what = "server " + t.slot + " (" + t.id + ")"
			}
			return api.OverrideResult{}, api.Conflict("%s of %s has no drain or maint to lift: nothing to undrain", what, b.Name)
		}
		if err := s.drains.Delete(ctx, b.Name, t.id); err != nil {
			return api.OverrideResult{}, api.Unavailable("the undrain was not stored, nothing changed: %v", err)
		}
		res.State = runtime.StateReady.String()
	default:
		return api.OverrideResult{}, api.NotFound("no action %s", strconv.Quote(hconsul.Clip(req.Action)))
	}
	res.Applied, res.Note = s.waitApplied(ctx, b.Name, t.id, want)
	return res, nil
}

// waitApplied waits until this node's loop has synced the backend with the
// override as written (want; nil: lifted), or gives up after a while and
// says why.
func (s *service) waitApplied(ctx context.Context, backend, id string, want *hconsul.Override) (bool, string) {
	timer := time.NewTimer(cmp.Or(s.wait, applyWait))
	defer timer.Stop()
	for {
		synced := s.loop.Synced()
		ov, _ := s.store.Overrides(backend)
		got, has := ov[id]
		inStore := want == nil && !has || want != nil && has && got.Same(*want)
		var why string
		if inStore {
			st, ok := s.loop.Status().Backends[backend]
			switch {
			case ok && !st.At.Before(s.store.DrainsChanged(backend)) && st.Err == nil:
				return slotHas(st.Desired, id, want)
			case ok && st.Err != nil:
				why = "this node's last sync of the backend failed: " + st.Err.Error()
			default:
				why = "this node has not synced the backend since"
			}
		} else {
			why = "this node has not read it back from consul kv"
			if _, err := s.store.DrainsStatus(); err != nil {
				why += ": " + err.Error()
			}
		}
		select {
		case <-synced:
		case <-timer.C:
			return false, "stored in consul kv, where every node reads it; not applied here yet: " + why
		case <-ctx.Done():
			return false, "stored in consul kv; stopped waiting for it to apply here: " + ctx.Err().Error()
		}
	}
}

// slotHas reports whether a sync that saw the override (want; nil: lifted)
// gave the instance's slot the state it asks for. An instance without a slot
// here (unplaced, or the empty guard holds the backend) takes it when it
// gets one.
func slotHas(d sync.Desired, id string, want *hconsul.Override) (bool, string) {
	for _, sl := range d.Slots {
		if sl.Instance == nil || sl.Instance.ID != id {
			continue
		}
		if want == nil && sl.Override == nil || want != nil && sl.Override != nil && sl.Override.Same(*want) {
			return true, ""
		}
		return false, "stored in consul kv; this node's last sync did not apply it to " + sl.Name
	}
	why := "the instance has no slot on this node"
	if d.Guarded {
		why = "the empty guard holds the backend on this node"
	}
	return false, "stored in consul kv, where every node reads it; " + why + ": it applies when the instance gets a slot"
}

func (s *service) Plan(ctx context.Context) (api.Plan, error) {
	previews, err := s.loop.Preview(ctx)
	if err != nil {
		return api.Plan{}, api.Unavailable("haproxy does not answer on %s: %v", s.cfg.HAProxy.RuntimeSocket, err)
	}
	p := api.Plan{Backends: make([]api.BackendPlan, 0, len(previews))}
	for _, pv := range previews {
		bp := api.BackendPlan{Name: pv.Backend, Commands: []string{}}
		if pv.Err != nil {
			bp.Error = pv.Err.Error()
			p.Backends = append(p.Backends, bp)
			continue
		}
		bp.Slots, bp.Bound, bp.Unplaced = len(pv.Desired.Slots), pv.Desired.Bound(), len(pv.Desired.Unplaced)
		for _, o := range pv.Plan.Ops {
			bp.Commands = append(bp.Commands, o.String())
		}
		if pv.GrowTo > 0 {
			bp.GrowTo, bp.GrowBy = pv.GrowTo, "add server"
			if pv.GrowBy == config.GrowthReload {
				bp.GrowBy = "reload"
				p.Reload = true
			}
		}
		p.Backends = append(p.Backends, bp)
	}
	return p, nil
}
