package sync

import (
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
)

// Timing of the loop.
const (
	// DefaultProbe is how often the loop asks HAProxy for its worker pid, to
	// notice a reload or restart it did not do and resync at once.
	DefaultProbe = 250 * time.Millisecond
	// DefaultResync is how often every backend is reconciled without a
	// change, which undoes changes made to hapctl's slots behind its back.
	DefaultResync = 30 * time.Second

	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
)

// Source is the latest view of Consul per backend (a *consul.Store).
type Source interface {
	Snapshot(backend string) (consul.Snapshot, bool)
	TakeDirty() []string
	Notify() <-chan struct{}
}

var _ Source = (*consul.Store)(nil)

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

	pid      int               // worker pid seen by the last read
	reported map[string]report // what was last logged per backend

	mu     sync.Mutex
	status Status
}

type report struct {
	unplaced int
	guarded  bool
	err      string
}

// Status is what the loop last saw and did.
type Status struct {
	LastSync    time.Time // last cycle that completed without error
	LastAttempt time.Time
	LastErr     error
	HAProxyPid  int
	HAProxyErr  error // set while the stats socket does not answer
	Backends    map[string]BackendStatus
}

// BackendStatus is the last desired state of one backend.
type BackendStatus struct {
	Desired Desired
	Actual  []runtime.ServerState // before the last apply
	At      time.Time
}

// Status returns a copy of the loop's status.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
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

// Run reconciles until ctx ends.
func (l *Loop) Run(ctx context.Context) {
	probe := time.NewTicker(or(l.Probe, DefaultProbe))
	defer probe.Stop()
	resync := time.NewTicker(or(l.Resync, DefaultResync))
	defer resync.Stop()
	all := l.names()
	pending := map[string]bool{}
	addAll := func() {
		for _, n := range all {
			pending[n] = true
		}
	}
	addAll()
	failures := 0
	var retry <-chan time.Time
	for {
		if len(pending) > 0 && retry == nil {
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			slices.Sort(names)
			err := l.Sync(ctx, names)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				failures++
				d := retryDelay(failures)
				if failures == 1 || failures%10 == 0 {
					l.Log.Error().Err(err).Int("failures", failures).Dur("retry_in", d).Msg("sync failed; HAProxy is left as it is")
				}
				retry = time.After(d)
			} else {
				if failures > 0 {
					l.Log.Info().Int("failures", failures).Msg("sync recovered")
				}
				failures = 0
				clear(pending)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Source.Notify():
			for _, b := range l.Source.TakeDirty() {
				pending[b] = true
			}
		case <-retry:
			retry = nil
		case <-resync.C:
			addAll()
		case <-probe.C:
			if l.workerChanged(ctx) {
				addAll()
				retry = nil // HAProxy answers again: do not wait out the backoff
			}
		}
	}
}

// workerChanged asks HAProxy for its worker pid and reports a change.
func (l *Loop) workerChanged(ctx context.Context) bool {
	res, err := l.Runtime.Exec(ctx, runtime.ShowInfo())
	if err == nil && len(res) == 1 && res[0].Err != nil {
		err = res[0].Err
	}
	var info runtime.Info
	if err == nil {
		info, err = runtime.ParseInfo(res[0].Answer)
	}
	l.mu.Lock()
	wasDown := l.status.HAProxyErr != nil
	l.status.HAProxyErr = err
	l.mu.Unlock()
	if err != nil {
		return false
	}
	if info.Pid != l.pid || wasDown {
		if l.pid != 0 {
			l.Log.Info().Int("old_pid", l.pid).Int("pid", info.Pid).Msg("haproxy worker changed (reload or restart): resyncing every backend")
		}
		return true
	}
	return false
}

// Sync reconciles the named backends once.
func (l *Loop) Sync(ctx context.Context, names []string) error {
	start := time.Now()
	defer func() { l.Metrics.SyncDuration.Observe(time.Since(start).Seconds()) }()
	actual, err := ReadActual(ctx, l.Runtime, names)
	l.mu.Lock()
	l.status.LastAttempt = start
	l.status.HAProxyErr = err
	l.mu.Unlock()
	if err != nil {
		l.setResult(start, err)
		return fmt.Errorf("reading haproxy state: %w", err)
	}
	if l.pid != 0 && actual.Pid != l.pid && len(names) < len(l.Backends) {
		// A reload or restart since the last look: check every backend.
		l.pid = actual.Pid
		return l.Sync(ctx, l.names())
	}
	l.pid = actual.Pid

	var (
		ops     []Op
		errs    []error
		changed = map[string]consul.Snapshot{}
		states  = map[string]BackendStatus{}
	)
	for _, name := range names {
		be, _ := cfgBackend(l.Backends, name)
		if err := actual.Errs[name]; err != nil {
			l.reportErr(name, err)
			errs = append(errs, err)
			continue
		}
		l.reportErr(name, nil)
		snap, ok := l.Source.Snapshot(name)
		if !ok {
			continue // Consul has not answered yet: leave HAProxy as it is
		}
		d := Desire(Input{Backend: be, Snapshot: snap, Actual: actual.Servers[name]})
		p := MakePlan(d, actual.Servers[name])
		l.reportPlan(name, d, p)
		states[name] = BackendStatus{Desired: d, Actual: actual.Servers[name], At: start}
		if len(p.Ops) > 0 {
			ops = append(ops, p.Ops...)
			changed[name] = snap
		}
	}
	if len(ops) > 0 {
		applied, err := Apply(ctx, l.Runtime, ops)
		done := time.Now()
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultOK).Add(float64(applied.OK))
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultError).Add(float64(applied.Failed))
		l.Metrics.RuntimeCommands.WithLabelValues(metrics.ResultSkipped).Add(float64(applied.Skipped))
		ev := l.Log.Info()
		if err != nil {
			ev = l.Log.Error().Err(err)
			errs = append(errs, fmt.Errorf("applying %d runtime commands: %w", len(ops), err))
		} else {
			for _, snap := range changed {
				l.Metrics.Propagation.Observe(done.Sub(snap.At).Seconds())
			}
		}
		ev.Strs("backends", keys(changed)).Int("ok", applied.OK).Int("failed", applied.Failed).
			Int("skipped", applied.Skipped).Dur("took_ms", done.Sub(start)).Msg("applied runtime commands")
		if l.Log.GetLevel() <= zerolog.DebugLevel {
			for _, o := range ops {
				l.Log.Debug().Str("backend", o.Backend).Str("server", o.Server).Str("op", o.String()).Msg("runtime command")
			}
		}
	}
	l.mu.Lock()
	if l.status.Backends == nil {
		l.status.Backends = map[string]BackendStatus{}
	}
	for name, st := range states {
		l.status.Backends[name] = st
	}
	l.status.HAProxyPid = actual.Pid
	l.mu.Unlock()
	err = errors.Join(errs...)
	l.setResult(start, err)
	return err
}

func (l *Loop) setResult(at time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status.LastErr = err
	if err == nil {
		l.status.LastSync = at
	}
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

func cfgBackend(backends []config.Backend, name string) (config.Backend, bool) {
	for _, b := range backends {
		if b.Name == name {
			return b, true
		}
	}
	return config.Backend{}, false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func retryDelay(failures int) time.Duration {
	d := min(retryBase<<min(failures-1, 10), retryMax)
	return d/2 + rand.N(d/2+1)
}
