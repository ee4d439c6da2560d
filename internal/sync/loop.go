package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/metrics"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// Timing of the loop.
const (
	// DefaultProbe is how often the loop asks HAProxy for its worker pid, to
	// notice a reload or restart it did not do and resync at once.
	DefaultProbe = 250 * time.Millisecond
	// DefaultResync is how often every backend is reconciled without a
	// change, which undoes changes made to hapctl's slots behind its back.
	DefaultResync = 30 * time.Second
	// startWrite bounds how long the first write of the runtime state into
	// the files waits for every backend's first sync.
	startWrite = 10 * time.Second

	// probeTimeout bounds the worker pid probe, which runs between syncs: a
	// socket that hangs holds the loop this long, not the batch timeout.
	probeTimeout = time.Second

	// leavePoll is how often the sessions of a slot draining for
	// removal_grace are counted.
	leavePoll = 250 * time.Millisecond

	// deferRetry is when a slot HAProxy would not delete yet (it still has
	// connections) is tried again.
	deferRetry = time.Second

	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
)

// Source is the latest view of Consul per backend (a *consul.Store).
type Source interface {
	Snapshot(backend string) (consul.Snapshot, bool)
	// Overrides returns a backend's operator overrides, and false until the
	// drains were read from Consul KV.
	Overrides(backend string) (consul.Overrides, bool)
	// DrainsChanged is when a backend's overrides last changed.
	DrainsChanged(backend string) time.Time
	TakeDirty() []string
	Notify() <-chan struct{}
}

var _ Source = (*consul.Store)(nil)

// Resizer changes slot counts through the config file (a
// *haproxycfg.Reloader): Want asks for a reload-mode backend to have a
// number of slots (0 withdraws the request), Persist for the slots added or
// deleted at runtime to be written into the file (with the server-state
// file). Both return at once.
type Resizer interface {
	Want(backend string, slots int)
	Persist()
}

// Loop keeps HAProxy in line with Consul: it waits for a change, reads the
// changed backends' state from HAProxy, plans and applies. Signals carry no
// data, so a missed or repeated one is harmless.
type Loop struct {
	Backends []config.Backend
	Source   Source
	Runtime  Runtime
	Metrics  *metrics.Metrics
	Log      zerolog.Logger
	Probe    time.Duration // 0: DefaultProbe
	Resync   time.Duration // 0: DefaultResync
	// RetryBase and RetryMax bound the backoff of a backend whose sync
	// failed; 0: 50 ms and 2 s. Other backends do not wait for it.
	RetryBase, RetryMax time.Duration
	// Resizer grows and shrinks reload-mode backends and persists dynamic
	// slots; nil: slot counts never change.
	Resizer Resizer
	// NoDynamic holds the backends with growth: dynamic that cannot take
	// dynamic servers, with why; they grow by reload.
	NoDynamic map[string]string

	kick       chan struct{}
	firstSync  time.Time                       // when the loop first synced
	unsaved    bool                            // runtime changes applied and not yet handed to Resizer.Persist
	low        map[string]time.Time            // per backend: since when it uses <= 1/4 of its slots
	shrinking  map[string]int                  // per backend: the slot count a shrink under way heads for
	leaving    map[string]map[string]time.Time // per backend and slot: since when it drains for removal_grace
	fallback   map[string]error                // backends whose `add server` HAProxy refused
	pid        int                             // worker pid seen by the last read
	probeFails int                             // worker pid probes failed in a row
	reported   map[string]report               // what was last logged per backend
	measured   map[string]time.Time            // per backend, the Consul answer whose propagation was observed
	byName     map[string]config.Backend
	byNameMu   sync.Once

	mu     sync.Mutex
	status Status
	synced chan struct{} // closed and replaced after every sync
}

type report struct {
	unplaced int
	guarded  bool
	err      string
}

// Status is what the loop last saw and did.
type Status struct {
	LastSync    time.Time // last sync that completed without error
	LastAttempt time.Time
	// LastErr joins the errors of every backend whose last sync failed.
	LastErr    error
	HAProxyPid int
	HAProxyErr error // set while the stats socket does not answer
	Backends   map[string]BackendStatus
	errs       map[string]error
}

// BackendStatus is the last desired state of one backend.
type BackendStatus struct {
	Desired Desired
	Actual  []runtime.ServerState // before the last apply
	At      time.Time
	// Growth is how the backend gets more slots: config.GrowthDynamic or
	// config.GrowthReload; GrowthWhy says why a dynamic backend grows by
	// reload.
	Growth    string
	GrowthWhy string
	// Err is set when applying the plan failed.
	Err error
}

// Status returns a copy of the loop's status.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.errs = nil
	s.Backends = make(map[string]BackendStatus, len(l.status.Backends))
	for k, v := range l.status.Backends {
		s.Backends[k] = v
	}
	return s
}

func (l *Loop) names() []string {
	out := make([]string, len(l.Backends))
	for i, b := range l.Backends {
		out[i] = b.Name
	}
	return out
}

// Synced returns a channel that is closed when the next sync ends.
func (l *Loop) Synced() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.synced == nil {
		l.synced = make(chan struct{})
	}
	return l.synced
}

// Kick makes the loop look at every backend at once (after a reload).
func (l *Loop) Kick() {
	select {
	case l.kicks() <- struct{}{}:
	default:
	}
}

func (l *Loop) kicks() chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kick == nil {
		l.kick = make(chan struct{}, 1)
	}
	return l.kick
}

// retryState is the backoff of one backend whose last sync failed.
type retryState struct {
	failures int
	at       time.Time
}

// Run reconciles until ctx ends. Each backend is synced as soon as it is
// known to have changed; a backend whose sync failed is retried with its own
// backoff, without holding back the others.
func (l *Loop) Run(ctx context.Context) {
	probe := time.NewTicker(cmp.Or(l.Probe, DefaultProbe))
	defer probe.Stop()
	resync := time.NewTicker(cmp.Or(l.Resync, DefaultResync))
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	all := l.names()
	pending := map[string]bool{}
	addAll := func() {
		for _, n := range all {
			pending[n] = true
		}
	}
	addAll()
	retry := map[string]*retryState{}
	scheduled := map[string]time.Time{} // backends to look at again at a time (shrink_after)
	kick := l.kicks()
	for {
		now := time.Now()
		var due []string
		next := time.Time{}
		for n, at := range scheduled {
			switch {
			case !at.After(now):
				pending[n] = true
				delete(scheduled, n)
			case next.IsZero() || at.Before(next):
				next = at
			}
		}
		for n := range pending {
			r := retry[n]
			switch {
			case r == nil || !r.at.After(now):
				due = append(due, n)
			case next.IsZero() || r.at.Before(next):
				next = r.at
			}
		}
		if len(due) > 0 {
			slices.Sort(due)
			out := l.sync(ctx, due)
			if ctx.Err() != nil {
				return
			}
			for _, n := range out.synced {
				err := out.errs[n]
				r := retry[n]
				switch {
				case err != nil:
					if r == nil {
						r = &retryState{}
						retry[n] = r
					}
					r.failures++
					r.at = time.Now().Add(l.retryDelay(r.failures))
					pending[n] = true
					if r.failures == 1 || r.failures%10 == 0 {
						l.Log.Error().Err(err).Str("backend", n).Int("failures", r.failures).Dur("retry_in", time.Until(r.at)).
							Msg("sync failed; HAProxy is left as it is")
					}
				case r != nil:
					l.Log.Info().Str("backend", n).Int("failures", r.failures).Msg("sync recovered")
					delete(retry, n)
					fallthrough
				default:
					delete(pending, n)
				}
			}
			for _, n := range out.again {
				pending[n] = true
			}
			for n, at := range out.later {
				scheduled[n] = at
			}
			continue
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Source.Notify():
			for _, b := range l.Source.TakeDirty() {
				pending[b] = true
			}
		case <-timer.C:
		case <-resync.C:
			addAll()
		case <-kick:
			addAll()
		case <-probe.C:
			if l.workerChanged(ctx) {
				addAll()
				clear(retry) // HAProxy answers again or anew: no backoff
			}
		}
	}
}

func (l *Loop) retryDelay(failures int) time.Duration {
	base, ceiling := cmp.Or(l.RetryBase, retryBase), cmp.Or(l.RetryMax, retryMax)
	d := min(base<<min(failures-1, 20), ceiling)
	return d/2 + rand.N(d/2+1)
}

// workerChanged asks HAProxy for its worker pid and reports a change.
func (l *Loop) workerChanged(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	res, err := l.Runtime.Exec(ctx, runtime.ShowInfo())
	if err == nil && len(res) == 1 && res[0].Err != nil {
		err = res[0].Err
	}
	var info runtime.Info
	if err == nil {
		info, err = runtime.ParseInfo(res[0].Answer)
	}
	if err != nil {
		// One slow answer (HAProxy busy) is not an outage: the second
		// failure in a row is.
		if l.probeFails++; l.probeFails >= 2 {
			l.mu.Lock()
			l.status.HAProxyErr = err
			l.mu.Unlock()
		}
		return false
	}
	l.probeFails = 0
	l.mu.Lock()
	wasDown := l.status.HAProxyErr != nil
	l.status.HAProxyErr = nil
	l.mu.Unlock()
	if info.Pid != l.pid || wasDown {
		if l.pid != 0 {
			l.Log.Info().Int("old_pid", l.pid).Int("pid", info.Pid).Msg("haproxy worker changed (reload or restart): resyncing every backend")
		}
		return true
	}
	return false
}

// syncOutcome is what one sync did per backend.
type syncOutcome struct {
	synced []string // the backends looked at: those asked for, or all after a worker change
	errs   map[string]error
	again  []string             // backends to sync again at once (slots freed for unplaced instances)
	later  map[string]time.Time // backends to sync again at a time (a shrink coming due)
}

// lookAt schedules a look at a backend at a time, keeping the earliest.
func (o *syncOutcome) lookAt(name string, at time.Time) {
	if cur, ok := o.later[name]; !ok || at.Before(cur) {
		o.later[name] = at
	}
}

// Sync reconciles the named backends once and returns their errors, joined.
func (l *Loop) Sync(ctx context.Context, names []string) error {
	out := l.sync(ctx, names)
	var errs []error
	for _, n := range names {
		if err := out.errs[n]; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *Loop) sync(ctx context.Context, names []string) syncOutcome {
	start := time.Now()
	defer func() { l.Metrics.SyncDuration.Observe(time.Since(start).Seconds()) }()
	out := syncOutcome{synced: names, errs: map[string]error{}, later: map[string]time.Time{}}
	actual, err := ReadActual(ctx, l.Runtime, names)
	l.mu.Lock()
	l.status.LastAttempt = start
	l.status.HAProxyErr = err
	l.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("reading haproxy state: %w", err)
		for _, n := range names {
			out.errs[n] = err
		}
		l.setResult(start, names, out.errs)
		return out
	}
	if l.pid != 0 && actual.Pid != l.pid && len(names) < len(l.Backends) {
		// A reload or restart since the last look: check every backend.
		l.pid = actual.Pid
		return l.sync(ctx, l.names())
	}
	l.pid = actual.Pid
	if l.measured == nil {
		l.measured = map[string]time.Time{}
	}

	var (
		ops    []Op
		fresh  = map[string]time.Time{} // backends applying a Consul answer for the first time
		states = map[string]BackendStatus{}
	)
	for _, name := range names {
		be := l.backend(name)
		if err := actual.Errs[name]; err != nil {
			l.reportErr(name, err)
			out.errs[name] = err
			continue
		}
		l.reportErr(name, nil)
		snap, ok := l.Source.Snapshot(name)
		overrides, drainsRead := l.Source.Overrides(name)
		if !ok || !drainsRead {
			continue // Consul has not answered yet: leave HAProxy as it is
		}
		servers := actual.Servers[name]
		in := Input{Backend: be, Snapshot: snap, Actual: servers, Overrides: overrides}
		in.Expired = l.expired(ctx, name, be, servers, start)
		d := Desire(in)
		var del []Op
		if !d.Guarded {
			if in.Grow, del = l.resize(name, be, d, servers, start, &out); in.Grow > 0 {
				d = Desire(in)
			}
		}
		l.trackLeaving(name, be, d, start, &out)
		p := MakePlan(d, servers)
		p.Ops = append(p.Ops, del...)
		l.reportPlan(name, d, p)
		st := BackendStatus{Desired: d, Actual: servers, At: start, Growth: config.GrowthReload}
		if l.dynamic(name, be) {
			st.Growth = config.GrowthDynamic
		} else if be.Growth == config.GrowthDynamic {
			st.GrowthWhy = l.whyNotDynamic(name)
		}
		states[name] = st
		// Propagation runs from the newest Consul answer this sync applies:
		// the service's instances or the drains.
		answered := snap.At
		if at := l.Source.DrainsChanged(name); at.After(answered) {
			answered = at
		}
		if answered.After(l.measured[name]) {
			l.measured[name] = answered
			if len(p.Ops) > 0 {
				fresh[name] = answered
			}
		}
		if len(p.Ops) > 0 {
			ops = append(ops, p.Ops...)
			if len(d.Unplaced) > 0 && d.Freed > 0 {
				out.again = append(out.again, name)
			}
		}
	}
	relaid := false // slots were added or removed at runtime
	if len(ops) > 0 {
		applied, err := Apply(ctx, l.Runtime, ops)
		done := time.Now()
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultOK).Add(float64(applied.OK))
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultError).Add(float64(applied.Failed))
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultSkipped).Add(float64(applied.Skipped))
		for name, at := range fresh {
			if !applied.FailedBackends[name] {
				l.Metrics.Propagation.Observe(done.Sub(at).Seconds())
			}
		}
		ev := l.Log.Info()
		if err != nil {
			ev = l.Log.Error().Err(err)
			err = fmt.Errorf("applying runtime commands: %w", err)
			for name := range applied.FailedBackends {
				out.errs[name] = err
			}
		}
		ev.Strs("backends", backendsOf(ops)).Int("ok", applied.OK).Int("failed", applied.Failed).
			Int("skipped", applied.Skipped).Dur("took_ms", done.Sub(start)).Msg("applied runtime commands")
		if l.Log.GetLevel() <= zerolog.DebugLevel {
			for _, o := range ops {
				l.Log.Debug().Str("backend", o.Backend).Str("server", o.Server).Str("op", o.String()).Msg("runtime command")
			}
		}
		for name := range applied.Deferred {
			l.Log.Debug().Str("backend", name).Msg("a slot to delete still has connections: trying again in a second")
			out.lookAt(name, time.Now().Add(deferRetry))
		}
		for name, err := range applied.NotDynamic {
			l.fallBack(name, err)
			out.again = append(out.again, name)
		}
		// Dynamic slots must be in the file before any reload, and every
		// other change should be there before a reload or restart by
		// someone else (`systemctl reload haproxy` after an edit): the
		// new worker then starts with every slot as it was, instead of as
		// it was at the last growth until the resync. The reloader waits
		// for the changes to settle; a start is one burst, written once
		// every backend has synced (or startWrite after the first sync,
		// when a backend has no answer from Consul), unless slots were
		// added or removed.
		l.unsaved = l.unsaved || len(ops) > 0
		relaid = slices.ContainsFunc(ops, func(o Op) bool { return o.Kind == OpAdd || o.Kind == OpDel })
	}
	l.mu.Lock()
	if l.status.Backends == nil {
		l.status.Backends = map[string]BackendStatus{}
	}
	for name, st := range states {
		st.Err = out.errs[name]
		l.status.Backends[name] = st
	}
	l.status.HAProxyPid = actual.Pid
	started := len(l.status.Backends) >= len(l.Backends)
	l.mu.Unlock()
	if l.firstSync.IsZero() {
		l.firstSync = start
	}
	started = started || time.Since(l.firstSync) > startWrite
	if l.Resizer != nil && l.unsaved && (started || relaid) {
		l.Resizer.Persist()
		l.unsaved = false
	}
	l.setResult(start, names, out.errs)
	return out
}

func backendsOf(ops []Op) []string {
	var out []string
	for _, o := range ops {
		if len(out) == 0 || out[len(out)-1] != o.Backend {
			out = append(out, o.Backend)
		}
	}
	return slices.Compact(out)
}

// setResult records the outcome of a sync of names: each backend keeps its
// error until a later sync of it succeeds.
func (l *Loop) setResult(at time.Time, names []string, errs map[string]error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status.errs == nil {
		l.status.errs = map[string]error{}
	}
	for _, n := range names {
		if err := errs[n]; err != nil {
			l.status.errs[n] = err
		} else {
			delete(l.status.errs, n)
		}
	}
	if len(errs) == 0 {
		l.status.LastSync = at
	}
	if l.synced != nil {
		close(l.synced)
		l.synced = nil
	}
	failing := make([]string, 0, len(l.status.errs))
	for n := range l.status.errs {
		failing = append(failing, n)
	}
	slices.Sort(failing)
	joined := make([]error, 0, len(failing))
	for _, n := range failing {
		joined = append(joined, l.status.errs[n])
	}
	l.status.LastErr = errors.Join(joined...)
}

// reportPlan updates the slot gauges and logs what changed about placement.
func (l *Loop) reportPlan(name string, d Desired, p Plan) {
	counts := map[string]int{"ready": 0, "drain": 0, "maint": 0, "free": 0}
	for _, s := range d.Slots {
		if s.Free() {
			counts["free"]++
		} else {
			counts[s.State.String()]++
		}
	}
	for state, n := range counts {
		l.Metrics.Slots.WithLabelValues(name, state).Set(float64(n))
	}
	l.Metrics.Unplaced.WithLabelValues(name).Set(float64(len(d.Unplaced)))
	guarded := 0.0
	if d.Guarded {
		guarded = 1
	}
	l.Metrics.EmptyGuard.WithLabelValues(name).Set(guarded)
	if l.reported == nil {
		l.reported = map[string]report{}
	}
	prev := l.reported[name]
	log := l.Log.With().Str("backend", name).Logger()
	if len(d.Unplaced) != prev.unplaced {
		if len(d.Unplaced) > 0 {
			ids := make([]string, 0, min(len(d.Unplaced), 10))
			for _, inst := range d.Unplaced[:min(len(d.Unplaced), 10)] {
				ids = append(ids, inst.ID)
			}
			log.Warn().Int("unplaced", len(d.Unplaced)).Int("slots", len(d.Slots)).Strs("instances", ids).
				Msg("more passing instances than slots: the rest are not placed")
		} else {
			log.Info().Msg("every passing instance has a slot again")
		}
	}
	if d.Guarded != prev.guarded {
		if d.Guarded {
			log.Error().Msg("consul reports no passing instance for a backend that had some: keeping the last set in HAProxy (empty_guard); its health checks decide")
		} else {
			log.Info().Msg("consul reports passing instances again: empty guard lifted")
		}
	}
	prev.unplaced, prev.guarded = len(d.Unplaced), d.Guarded
	l.reported[name] = prev
}

func (l *Loop) reportErr(name string, err error) {
	if l.reported == nil {
		l.reported = map[string]report{}
	}
	prev := l.reported[name]
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != prev.err && err == nil {
		l.Log.Info().Str("backend", name).Msg("backend is back in HAProxy")
	}
	prev.err = msg
	l.reported[name] = prev
}

// resize applies the growth policy to one backend: the number of slots to
// add now (dynamic growth) and the ops that delete trailing free slots
// (dynamic shrink). A reload-mode backend's new slot count goes to the
// Resizer instead.
func (l *Loop) resize(name string, be config.Backend, d Desired, servers []runtime.ServerState, now time.Time, out *syncOutcome) (int, []Op) {
	slots := Slots(servers)
	sz := SizingOf(be, d, slots)
	target := slot.Grow(sz)
	if target == sz.Slots {
		target = l.shrinkTarget(name, be, sz, now, out)
	} else {
		delete(l.low, name)
		delete(l.shrinking, name)
	}
	if !l.dynamic(name, be) {
		if l.Resizer != nil {
			if target == sz.Slots {
				target = 0 // nothing to change: withdraw any request
			}
			l.Resizer.Want(name, target)
		}
		return 0, nil
	}
	switch {
	case target > sz.Slots:
		return target - sz.Slots, nil
	case target < sz.Slots:
		var names []string
		for i := len(slots) - 1; i >= 0 && len(slots)-len(names) > target; i-- {
			if !d.Slots[i].Free() || slots[i].State() != runtime.StateMaint {
				break // only trailing free slots go: a bound slot never moves
			}
			names = append(names, slots[i].Name)
		}
		if len(names) > 0 {
			l.Log.Info().Str("backend", name).Int("used", sz.Used).Int("slots", sz.Slots).Int("to", sz.Slots-len(names)).
				Dur("shrink_after", be.ShrinkAfter).Msg("shrinking: deleting trailing free slots")
		}
		return 0, DelOps(name, names)
	}
	return 0, nil
}

// SizingOf returns what a backend's slot count depends on: its desired
// state (without growth) and its slots as HAProxy runs them (Slots of its
// servers, in the order Desire saw them).
func SizingOf(be config.Backend, d Desired, slots []runtime.ServerState) slot.Sizing {
	sz := slot.Sizing{Slots: len(slots), Need: d.Bound() + len(d.Unplaced), Used: d.Bound(), Min: be.MinSlots, Max: be.MaxSlots}
	for i, s := range slots {
		if !d.Slots[i].Free() || s.State() != runtime.StateMaint {
			if n, _ := slot.Index(s.Name); n > sz.Highest {
				sz.Highest = n
			}
		}
	}
	return sz
}

// shrinkTarget returns the slot count a backend shrinks to once it has used
// at most a quarter of its slots for shrink_after, or its slot count; until
// then it schedules a look at the backend when the time is up.
func (l *Loop) shrinkTarget(name string, be config.Backend, sz slot.Sizing, now time.Time, out *syncOutcome) int {
	if to, ok := l.shrinking[name]; ok {
		// A shrink under way (a slot HAProxy would not delete yet) goes on
		// to where it was headed, as long as no instance needs the slots.
		if t := max(to, sz.Highest, sz.Min); t < sz.Slots {
			return t
		}
		delete(l.shrinking, name)
	}
	if !slot.Low(sz) {
		delete(l.low, name)
		return sz.Slots
	}
	if l.low == nil {
		l.low = map[string]time.Time{}
	}
	since, ok := l.low[name]
	if !ok {
		since = now
		l.low[name] = now
	}
	if due := since.Add(be.ShrinkAfter); now.Before(due) {
		out.lookAt(name, due)
		return sz.Slots
	}
	t := slot.Shrink(sz)
	if t < sz.Slots {
		// Remember where it heads without the slots still in service now,
		// which go to maint in this sync.
		free := sz
		free.Highest = 0
		if l.shrinking == nil {
			l.shrinking = map[string]int{}
		}
		l.shrinking[name] = slot.Shrink(free)
	}
	return t
}

// expired returns the slots of a backend that drain for removal_grace and
// are done: the grace is up, or HAProxy counts no session on them.
func (l *Loop) expired(ctx context.Context, name string, be config.Backend, servers []runtime.ServerState, now time.Time) map[string]bool {
	leaving := l.leaving[name]
	if len(leaving) == 0 {
		return nil
	}
	out := map[string]bool{}
	var draining []string
	for _, s := range servers {
		since, ok := leaving[s.Name]
		switch {
		case !ok:
		case now.Sub(since) >= be.RemovalGrace:
			out[s.Name] = true
		case s.State() == runtime.StateDrain:
			draining = append(draining, s.Name)
		}
	}
	if len(draining) == 0 {
		return out
	}
	sessions, err := l.sessions(ctx, name)
	if err != nil {
		l.Log.Warn().Err(err).Str("backend", name).Msg("counting the sessions of leaving slots failed; they drain until removal_grace is up")
		return out
	}
	for _, n := range draining {
		if sessions[n] == 0 {
			out[n] = true
		}
	}
	return out
}

func (l *Loop) sessions(ctx context.Context, backend string) (map[string]int, error) {
	cmd, err := runtime.ShowStat(backend)
	if err != nil {
		return nil, err
	}
	res, err := l.Runtime.Exec(ctx, cmd)
	if err == nil && res[0].Err != nil {
		err = res[0].Err
	}
	if err != nil {
		return nil, err
	}
	return runtime.ParseSessions(res[0].Answer)
}

// trackLeaving records since when each leaving slot drains and schedules
// the next look at the backend: when a grace is up, or to count sessions.
func (l *Loop) trackLeaving(name string, be config.Backend, d Desired, now time.Time, out *syncOutcome) {
	prev := l.leaving[name]
	cur := map[string]time.Time{}
	next := now.Add(leavePoll)
	for _, s := range d.Slots {
		if !s.Leaving {
			continue
		}
		since, ok := prev[s.Name]
		if !ok {
			since = now
			l.Log.Info().Str("backend", name).Str("server", s.Name).Str("endpoint", s.Instance.Endpoint().String()).
				Dur("removal_grace", be.RemovalGrace).Msg("instance left consul's passing set: draining before maint")
		}
		cur[s.Name] = since
		if due := since.Add(be.RemovalGrace); due.Before(next) {
			next = due
		}
	}
	if len(cur) == 0 {
		delete(l.leaving, name)
		return
	}
	if l.leaving == nil {
		l.leaving = map[string]map[string]time.Time{}
	}
	l.leaving[name] = cur
	out.lookAt(name, next)
}

// dynamic reports whether a backend grows with `add server`.
func (l *Loop) dynamic(name string, be config.Backend) bool {
	return be.Growth == config.GrowthDynamic && l.NoDynamic[name] == "" && l.fallback[name] == nil
}

func (l *Loop) whyNotDynamic(name string) string {
	if why := l.NoDynamic[name]; why != "" {
		return why
	}
	if err := l.fallback[name]; err != nil {
		return err.Error()
	}
	return ""
}

// fallBack makes a backend grow by reload from now on, because HAProxy
// refused to add a server to it.
func (l *Loop) fallBack(name string, err error) {
	if l.fallback == nil {
		l.fallback = map[string]error{}
	}
	if _, ok := l.fallback[name]; ok {
		return
	}
	l.fallback[name] = err
	l.Log.Warn().Err(err).Str("backend", name).Msg("haproxy refuses dynamic servers in this backend: it grows by reload from now on")
}

// backend returns the config of a managed backend, from a map built once.
func (l *Loop) backend(name string) config.Backend {
	l.byNameMu.Do(func() {
		l.byName = make(map[string]config.Backend, len(l.Backends))
		for _, b := range l.Backends {
			l.byName[b.Name] = b
		}
	})
	return l.byName[name]
}
