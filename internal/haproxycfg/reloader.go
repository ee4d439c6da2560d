package haproxycfg

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/google/renameio"
	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// Reloader timing.
const (
	// A pass that only writes the slot lines and the state file waits
	// until the runtime changes have stopped for a while, so that a burst
	// (a first start, a deploy) shares one write, but no longer than
	// persistMax after the first change it carries; and two such passes
	// keep some time apart. Both waits grow with what the last pass took
	// (persistDelays: 5× and 10×, so that writing takes at most a tenth of
	// a core): 100 ms for a small config; a second after a burst and at
	// most every 2 s at 500 backends × 50 slots, where a pass costs
	// ≈ 150 ms of CPU.
	persistWaitMin = 100 * time.Millisecond
	persistSettle  = time.Second
	persistEvery   = 2 * time.Second
	persistMax     = 10 * time.Second
	// DefaultSettle is how long requests must stop changing before the
	// Reloader acts, so that a burst of new instances costs one reload.
	DefaultSettle = 100 * time.Millisecond
	// reloadRetryMax caps the backoff after a failed attempt.
	reloadRetryMax = 5 * time.Minute
)

// Stages of an attempt, for failure metrics and messages.
const (
	StageRender = "render" // reading the file or HAProxy's state, editing
	StageCheck  = "check"  // haproxy -c refused the new file
	StageWrite  = "write"  // writing the config or state file
	StageReload = "reload" // the master's reload, or the new worker
	StageVerify = "verify" // the new worker's state differs from the old one's
)

// Reasons for reloads (hapctl_reloads_total{reason}).
const (
	ReasonGrow   = "grow"
	ReasonShrink = "shrink"
)

// Reloader changes slot counts through the config file, one attempt at a
// time, in its own goroutine so that the runtime path never waits on it:
//
//   - Want asks for a backend to have a number of slots by reload (reload
//     mode): the file's slot lines are rendered from HAProxy's runtime state,
//     checked with `haproxy -c`, written atomically, the runtime state is
//     dumped to the server-state file, and HAProxy reloads through the master
//     CLI. A failed reload restores the previous file.
//   - Persist asks for the slot lines to be written from the runtime state
//     without a reload (dynamic mode: slots added with `add server` must be in
//     the file before any later reload or restart).
//
// Requests are levels, not events: repeating one costs nothing. They are
// gathered until they stop changing for Settle (at most MinInterval), and
// reloads are at least MinInterval apart. After a failure the Reloader
// backs off exponentially: never a reload loop.
type Reloader struct {
	ConfigFile string
	Binary     string
	StateFile  string     // "" for none
	Backends   []SlotSpec // the managed backends and their server_options (Slots unused)
	Runtime    Runtime    // stats socket
	Master     *runtime.Master
	// MinInterval is haproxy.reload_min_interval.
	MinInterval time.Duration
	Settle      time.Duration // 0: DefaultSettle
	Log         zerolog.Logger
	// OnReload is called after each reload with its reason, OnFailure with
	// the stage of each failure, OnDone after an attempt that wrote the file
	// or reloaded (the sync loop then looks at every backend again). Each
	// may be nil.
	OnReload  func(reason string)
	OnFailure func(stage string)
	OnDone    func()

	mu         gosync.Mutex
	want       map[string]int
	persist    bool
	first      time.Time // when the oldest pending request came
	changed    time.Time // when a request last changed
	lastReload time.Time
	lastSave   time.Time     // when the last attempt without a reload request ended
	lastPass   time.Duration // how long that attempt took
	firstCost  time.Duration // a guess at it before the first one
	retryAt    time.Time
	failures   int
	err        error
	wake       chan struct{}
}

// ReloaderStatus is what the Reloader last did.
type ReloaderStatus struct {
	Err        error // the last attempt's failure; nil once one succeeds
	RetryAt    time.Time
	Failures   int
	Pending    map[string]int // slot counts asked for and not done yet
	LastReload time.Time
}

// Status returns the Reloader's state.
func (r *Reloader) Status() ReloaderStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ReloaderStatus{Err: r.err, RetryAt: r.retryAt, Failures: r.failures, Pending: maps.Clone(r.want), LastReload: r.lastReload}
}

// Want asks for backend to have slots slots, through a reload; slots <= 0
// withdraws the request.
func (r *Reloader) Want(backend string, slots int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.want[backend]
	switch {
	case slots <= 0 && !ok, slots > 0 && ok && cur == slots:
		return
	case slots <= 0:
		delete(r.want, backend)
	default:
		if r.want == nil {
			r.want = map[string]int{}
		}
		r.want[backend] = slots
	}
	r.touch()
}

// Persist asks for the slot lines to be written from the runtime state,
// without a reload.
func (r *Reloader) Persist() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.persist = true
	if r.lastPass == 0 && r.firstCost == 0 {
		// No pass yet to learn the cost from (the first one follows a
		// start, when it competes with the first sync): guess it from
		// the file's size, ≈ 100 ns a byte as measured at 500 backends.
		if fi, err := os.Stat(r.ConfigFile); err == nil {
			r.firstCost = time.Duration(fi.Size()) * 100 * time.Nanosecond
		}
	}
	r.touch() // also when one is pending: a burst settles first
}

// touch records a changed request; r.mu is held.
func (r *Reloader) touch() {
	now := time.Now()
	if r.first.IsZero() {
		r.first = now
	}
	r.changed = now
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// due returns when the pending requests may be acted on; false when there
// are none.
func (r *Reloader) due() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.want) == 0 && !r.persist {
		return time.Time{}, false
	}
	settle := r.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	t := r.changed.Add(settle)
	if limit := r.first.Add(max(settle, r.MinInterval)); t.After(limit) {
		t = limit
	}
	if len(r.want) == 0 {
		// Writing the slot lines and the state file only.
		settle, every := persistDelays(cmp.Or(r.lastPass, r.firstCost))
		if r.lastPass == 0 && settle > persistWaitMin {
			// The first write follows a start, whose own work (and
			// whoever checks on it) should be done first: twice the wait,
			// still 100 ms for a small config, 1.5 s at 25k slots.
			settle = min(2*settle, persistEvery)
		}
		t = r.changed.Add(settle)
		if limit := r.first.Add(persistMax); t.After(limit) {
			t = limit
		}
		if next := r.lastSave.Add(every); !r.lastSave.IsZero() && next.After(t) {
			t = next
		}
	}
	if len(r.want) > 0 && !r.lastReload.IsZero() {
		if next := r.lastReload.Add(r.MinInterval); next.After(t) {
			t = next
		}
	}
	if r.retryAt.After(t) {
		t = r.retryAt
	}
	return t, true
}

// persistDelays returns how long a pass that only writes the files waits
// for the changes to stop, and the least time between two such passes,
// after one that took last.
func persistDelays(last time.Duration) (settle, every time.Duration) {
	return min(max(persistWaitMin, 5*last), persistSettle), min(max(persistWaitMin, 10*last), persistEvery)
}

// errEditedMeanwhile is a pass that found haproxy.cfg changed by someone
// else between reading and replacing it; it is tried again after editRetry
// and is not a failure.
var errEditedMeanwhile = errors.New("haproxy config changed while hapctl rendered it")

const editRetry = 200 * time.Millisecond

// Run acts on requests until ctx ends.
func (r *Reloader) Run(ctx context.Context) {
	r.mu.Lock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	wake := r.wake
	r.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		at, ok := r.due()
		if ok && !at.After(time.Now()) {
			r.attemptPending(ctx)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if ok {
			timer.Reset(time.Until(at))
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
	}
}

// attemptPending makes one attempt at the pending requests and records its
// outcome.
func (r *Reloader) attemptPending(ctx context.Context) {
	r.mu.Lock()
	r.persist = false
	start := time.Now()
	persistOnly := len(r.want) == 0
	r.mu.Unlock()
	out, err := r.attempt(ctx, func() map[string]int {
		if persistOnly {
			// A slot count asked for during this pass waits for its own
			// pass, with its settle time and reload_min_interval.
			return nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return maps.Clone(r.want)
	})
	want := out.Want
	r.mu.Lock()
	if persistOnly {
		r.lastPass = time.Since(start)
		r.lastSave = time.Now() // the next pass keeps apart from this one's end
	}
	if out.Reloaded {
		r.lastReload = time.Now()
	}
	if errors.Is(err, errEditedMeanwhile) {
		// Someone saved haproxy.cfg while this pass rendered it: not a
		// failure, render again from their file shortly.
		r.persist = true
		r.retryAt = time.Now().Add(editRetry)
		r.first = time.Now()
		r.mu.Unlock()
		r.Log.Info().Str("file", r.ConfigFile).Msg("haproxy config changed while hapctl rendered it: rendering again from the new file")
		return
	}
	if err != nil {
		r.failures++
		r.err = err
		d := max(r.MinInterval, 500*time.Millisecond)
		for i := 1; i < r.failures && d < reloadRetryMax; i++ {
			d *= 2
		}
		d = min(d, reloadRetryMax)
		r.retryAt = time.Now().Add(d/2 + rand.N(d/2+1))
		r.persist = true // write again on the next try
		failures, retry := r.failures, time.Until(r.retryAt)
		r.mu.Unlock()
		r.Log.Error().Err(err).Int("failures", failures).Dur("retry_in", retry).
			Msg("changing the slots through the config file failed; HAProxy keeps serving through the runtime path")
	} else {
		if r.failures > 0 {
			r.Log.Info().Int("failures", r.failures).Msg("config file and slots are in line again")
		}
		r.failures, r.err, r.retryAt = 0, nil, time.Time{}
		for b, n := range want {
			if r.want[b] == n {
				delete(r.want, b)
			}
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	if len(r.want) == 0 && !r.persist {
		r.first = time.Time{}
	} else {
		r.first = time.Now()
	}
	r.mu.Unlock()
	if r.OnDone != nil && (out.Reloaded || out.Relaid) {
		r.OnDone()
	}
}

// Outcome is what one attempt did.
type Outcome struct {
	Written  bool   // the config file changed
	Relaid   bool   // slot lines were added or removed in the file
	Reloaded bool   // HAProxy reloaded
	Reason   string // ReasonGrow or ReasonShrink when it reloaded
	// Want is the slot counts the attempt acted on.
	Want map[string]int
	// Mismatches are the slots whose state after the reload differs from
	// the state before it (verification); empty when all came through.
	Mismatches []string
}

// StageError is a failed attempt at one stage.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

func (r *Reloader) fail(stage string, err error) error {
	if r.OnFailure != nil {
		r.OnFailure(stage)
	}
	return &StageError{Stage: stage, Err: err}
}

// Attempt renders every managed backend's slot lines from HAProxy's runtime
// state (want gives new slot counts), writes the file when it changed and
// reloads when a backend's slots in the file differ from those HAProxy runs.
// It is what Run does for each batch of requests.
func (r *Reloader) Attempt(ctx context.Context, want map[string]int) (Outcome, error) {
	return r.attempt(ctx, func() map[string]int { return want })
}

// rendering is the file as one reading of the runtime state makes it.
type rendering struct {
	snapshot string // the `show servers state` answer it comes from
	running  map[string]map[int]runtime.ServerState
	want     map[string]int
	data     []byte
	layout   map[string][]int // slot numbers per backend
	reload   bool
	grew     bool
	relaid   bool // slot lines added or removed against the file
}

func (r *Reloader) attempt(ctx context.Context, wanted func() map[string]int) (Outcome, error) {
	var out Outcome
	cur, err := os.ReadFile(r.ConfigFile)
	if err != nil {
		return out, r.fail(StageRender, fmt.Errorf("reading haproxy config: %w", err))
	}
	rd, err := r.render(ctx, cur, wanted)
	if err != nil {
		return out, r.fail(StageRender, err)
	}
	out.Want = rd.want
	if bytes.Equal(rd.data, cur) && !rd.reload {
		return out, r.saveState(rd)
	}
	// Check the candidate, then look at HAProxy once more right before the
	// file is written and HAProxy reloads: the sync loop keeps applying
	// changes meanwhile, and the lines and the state file must carry them.
	// The slot values in a line are validated, so a new reading that keeps
	// the same slot lines needs no second check; other slot lines do.
	checked := rd
	out.Relaid = rd.relaid
	// The same slot lines with new values (address, weight, maint) need no
	// check: the values are validated, so `haproxy -c` has nothing to find,
	// and a pass that only keeps the file in step stays cheap.
	for try := 1; rd.reload || out.Relaid; try++ {
		if err := CheckData(ctx, r.Binary, r.ConfigFile, checked.data); err != nil {
			var ce *CheckError
			if errors.As(err, &ce) {
				return out, r.fail(StageCheck, err)
			}
			return out, r.fail(StageWrite, err)
		}
		if rd, err = r.render(ctx, cur, wanted); err != nil {
			return out, r.fail(StageRender, err)
		}
		if sameLayout(rd.layout, checked.layout) {
			break
		}
		if try == 3 {
			return out, r.fail(StageRender, errors.New("the slots kept changing while the new config was checked"))
		}
		checked = rd
	}
	if now, err := os.ReadFile(r.ConfigFile); err != nil {
		return out, r.fail(StageRender, fmt.Errorf("reading haproxy config: %w", err))
	} else if !bytes.Equal(now, cur) {
		return out, errEditedMeanwhile
	}
	changed := !bytes.Equal(rd.data, cur)
	if changed {
		if err := writeFile(r.ConfigFile, rd.data); err != nil {
			return out, r.fail(StageWrite, err)
		}
		out.Written = true
	}
	out.Want = rd.want
	if !rd.reload {
		return out, r.saveState(rd)
	}
	if err := r.saveState(rd); err != nil {
		return out, err
	}
	out.Reason = ReasonShrink
	if rd.grew {
		out.Reason = ReasonGrow
	}
	start := time.Now()
	pid, reloaded, err := reload(ctx, r.Master, r.Runtime)
	if reloaded {
		out.Reloaded = true
		if r.OnReload != nil {
			r.OnReload(out.Reason)
		}
	}
	if err != nil {
		// Put the file back only when HAProxy says the reload failed (the
		// old worker runs the old file) and nobody changed it since.
		now, _ := os.ReadFile(r.ConfigFile)
		if changed && errors.Is(err, runtime.ErrReloadFailed) && bytes.Equal(now, rd.data) {
			if rerr := writeFile(r.ConfigFile, cur); rerr != nil {
				err = fmt.Errorf("%w; restoring the previous config also failed: %v", err, rerr)
			} else {
				err = fmt.Errorf("%w; the previous config file is restored", err)
			}
		}
		return out, r.fail(StageReload, err)
	}
	if err := writeFile(r.ConfigFile+".last-good", rd.data); err != nil {
		r.Log.Warn().Err(err).Msg("keeping a last-known-good copy of the haproxy config")
	}
	took := time.Since(start)
	out.Mismatches, err = r.verify(ctx, rd.running)
	if err != nil {
		return out, r.fail(StageVerify, err)
	}
	ev := r.Log.Info()
	if len(out.Mismatches) > 0 {
		if r.OnFailure != nil {
			r.OnFailure(StageVerify)
		}
		ev = r.Log.Warn().Strs("mismatches", out.Mismatches[:min(len(out.Mismatches), 10)]).Int("mismatched", len(out.Mismatches))
	}
	ev.Int("pid", pid).Str("reason", out.Reason).Dur("took_ms", took).Msg("haproxy reloaded with new slot lines")
	return out, nil
}

// saveState writes the servers state a rendering was made from to the
// state file, so that a reload or restart, by hapctl or anyone, brings back
// each slot's drain, maint, weight and port along with the slot lines.
func (r *Reloader) saveState(rd rendering) error {
	if r.StateFile == "" {
		return nil
	}
	if err := writeStateFile(r.StateFile, rd.snapshot); err != nil {
		return r.fail(StageWrite, err)
	}
	return nil
}

// render reads HAProxy's servers state and renders every managed backend's
// slot lines into cur. The slot counts asked for are taken after the
// reading, so that a request withdrawn before the loop's last apply is not
// acted on with a state that apply changed.
func (r *Reloader) render(ctx context.Context, cur []byte, wanted func() map[string]int) (rendering, error) {
	res, err := r.Runtime.Exec(ctx, runtime.ShowAllServersState())
	if err == nil && res[0].Err != nil {
		err = res[0].Err
	}
	if err != nil {
		return rendering{}, fmt.Errorf("reading haproxy's servers state: %w", err)
	}
	servers, err := runtime.ParseServersState(res[0].Answer)
	if err != nil {
		return rendering{}, err
	}
	rd := rendering{snapshot: res[0].Answer, running: map[string]map[int]runtime.ServerState{}, want: wanted(),
		data: cur, layout: map[string][]int{}}
	for _, s := range servers {
		if n, ok := slot.Index(s.Name); ok {
			if rd.running[s.Backend] == nil {
				rd.running[s.Backend] = map[int]runtime.ServerState{}
			}
			rd.running[s.Backend][n] = s
		}
	}
	file := NewFile(cur) // one split for every backend below
	for _, spec := range r.Backends {
		run := rd.running[spec.Backend]
		target, asked := rd.want[spec.Backend]
		inFile := file.SlotsIn(spec.Backend)
		indices := renderIndices(run, inFile, target, asked)
		rd.layout[spec.Backend] = indices
		rd.relaid = rd.relaid || !slices.Equal(indices, inFile)
		states := make([]SlotState, 0, len(indices))
		for _, n := range indices {
			states = append(states, slotState(n, run))
		}
		if err := file.SetSlots(spec.Backend, states, spec.Options); err != nil {
			return rendering{}, err
		}
		if asked && !sameIndices(indices, run) {
			rd.reload = true
			rd.grew = rd.grew || len(indices) > len(run)
		}
	}
	rd.data = file.Bytes()
	if !rd.relaid && !rd.reload {
		// The same slot lines with new, validated values: nothing for
		// client-native to find, and reading the whole file costs 155 ms
		// at 500 backends × 64 slots (BenchmarkVerify), on every pass
		// that keeps the file in step with the runtime state.
		return rd, nil
	}
	// client-native must read every backend, no slot declared twice.
	check := slices.Clone(r.Backends)
	for i := range check {
		check[i].Slots = 0
	}
	if err := Verify(rd.data, check); err != nil {
		return rendering{}, err
	}
	return rd, nil
}

func sameLayout(a, b map[string][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// renderIndices returns the slot numbers a backend's file must have: those
// HAProxy runs (or, when it runs none, those the file has); with a target,
// new numbers (lowest free first) up to it, or the trailing ones dropped
// down to it, as long as they are free (in maint, or not running at all).
func renderIndices(run map[int]runtime.ServerState, inFile []int, target int, asked bool) []int {
	set := map[int]bool{}
	for n := range run {
		set[n] = true
	}
	if len(run) == 0 {
		for _, n := range inFile {
			set[n] = true
		}
	}
	if asked && target > len(set) {
		for _, n := range slot.Missing(set, target-len(set)) {
			set[n] = true
		}
	}
	out := slices.Sorted(maps.Keys(set))
	for asked && len(out) > target {
		n := out[len(out)-1]
		if s, ok := run[n]; ok && s.State() != runtime.StateMaint {
			break // in service: a bound slot never moves
		}
		out = out[:len(out)-1]
	}
	return out
}

// slotState is how slot n is rendered: as HAProxy runs it, or free.
func slotState(n int, run map[int]runtime.ServerState) SlotState {
	s, ok := run[n]
	if !ok || runtime.ValidAddr(s.Addr) != nil || runtime.ValidPort(s.Port) != nil || runtime.ValidWeight(s.Weight) != nil {
		return SlotState{Index: n, Endpoint: PlaceholderEndpoint, Weight: 1, Maint: true}
	}
	return SlotState{Index: n, Endpoint: netip.AddrPortFrom(s.Addr, uint16(s.Port)), Weight: s.Weight,
		Maint: s.State() == runtime.StateMaint}
}

func sameIndices(indices []int, run map[int]runtime.ServerState) bool {
	if len(indices) != len(run) {
		return false
	}
	for _, n := range indices {
		if _, ok := run[n]; !ok {
			return false
		}
	}
	return true
}

// verify compares the slots the new worker runs with those the old one ran
// (the snapshot the file and the state file were written from): address,
// port, weight and admin state must have come through the reload.
func (r *Reloader) verify(ctx context.Context, before map[string]map[int]runtime.ServerState) ([]string, error) {
	after, missing, err := runningSlots(ctx, r.Runtime, r.Backends)
	if err != nil {
		return nil, fmt.Errorf("reading the new worker's servers state: %w", err)
	}
	var out []string
	for _, spec := range r.Backends {
		if missing[spec.Backend] && len(before[spec.Backend]) > 0 {
			out = append(out, fmt.Sprintf("%s: not in the new worker", spec.Backend))
		}
		for _, n := range slices.Sorted(maps.Keys(after[spec.Backend])) {
			s := after[spec.Backend][n]
			old, ok := before[spec.Backend][n]
			if !ok {
				continue // a new slot
			}
			if old.Addr != s.Addr || old.Port != s.Port || old.Weight != s.Weight || old.State() != s.State() {
				out = append(out, fmt.Sprintf("%s/%s: %s weight %d %s before, %s weight %d %s after",
					spec.Backend, s.Name, old.Endpoint(), old.Weight, old.State(), s.Endpoint(), s.Weight, s.State()))
			}
		}
	}
	return out, nil
}

// writeStateFile writes a `show servers state` answer where HAProxy's
// load-server-state-from-file reads it.
func writeStateFile(path, snapshot string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("server state file: %w", err)
	}
	if err := renameio.WriteFile(path, []byte(strings.TrimRight(snapshot, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing server state file: %w", err)
	}
	return nil
}
