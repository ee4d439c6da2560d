package haproxycfg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// ReloadTimeout bounds a reload: the master's answer, the new worker, and
// the stats socket served by it.
const ReloadTimeout = 30 * time.Second

// Runtime runs commands on the stats socket.
type Runtime interface {
	Exec(ctx context.Context, cmds ...runtime.Command) ([]runtime.Result, error)
}

// Bootstrap makes sure haproxy.cfg holds every managed backend's slot lines
// and that the running HAProxy has loaded them.
type Bootstrap struct {
	ConfigFile string
	Binary     string
	StateFile  string // server-state-file dumped before a reload; "" for none
	Runtime    Runtime
	Master     *runtime.Master
	Log        zerolog.Logger
	// Dynamic holds the backends that grow with `add server`: slot lines
	// the running HAProxy lacks are added at runtime by the sync loop, not
	// by a reload (unless HAProxy lacks the backend itself).
	Dynamic map[string]bool
}

// BootstrapPlan is what Bootstrap would do.
type BootstrapPlan struct {
	Data    []byte   // the file as it must be
	Changed bool     // Data differs from the file on disk
	Changes []Change // what the edit adds
	// Stale lists backends whose running HAProxy lacks slot lines the file
	// has and cannot get them without a reload.
	Stale []string
	// OptionsChanged lists backends whose slot lines get new
	// server_options: running servers take them only from a reload.
	OptionsChanged []string
	// Running is false when the stats socket does not answer: HAProxy will
	// read the file when it starts, no reload is needed.
	Running    bool
	RuntimeErr error
	// Warnings are ConfigWarnings: why runtime state would not survive a
	// reload, and server lines that are not slots.
	Warnings []string
}

// NeedsReload reports whether HAProxy must reload to get its slots.
func (p BootstrapPlan) NeedsReload() bool {
	return p.Running && (len(p.Stale) > 0 || len(p.OptionsChanged) > 0)
}

// Plan reads the config file and HAProxy's state; it changes nothing. When
// a reload is needed, the existing slot lines are rendered from HAProxy's
// runtime state (address, weight, maint), so that the reload keeps every
// bound slot where it is.
func (b *Bootstrap) Plan(ctx context.Context, specs []SlotSpec) (BootstrapPlan, error) {
	cur, err := os.ReadFile(b.ConfigFile)
	if err != nil {
		return BootstrapPlan{}, fmt.Errorf("reading haproxy config: %w", err)
	}
	parsed, err := Parse(cur)
	if err != nil {
		return BootstrapPlan{}, fmt.Errorf("%s: %w", b.ConfigFile, err)
	}
	running, missing, rerr := runningSlots(ctx, b.Runtime, specs)
	specs = slices.Clone(specs)
	for i, s := range specs {
		// Slots added at runtime (dynamic growth) belong in the file too.
		for n := range running[s.Backend] {
			specs[i].Slots = max(specs[i].Slots, n)
		}
	}
	data, changes, err := EnsureSlots(cur, specs)
	if err != nil {
		return BootstrapPlan{}, err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Backend
	}
	p := BootstrapPlan{Changes: changes, Warnings: ConfigWarnings(parsed, b.StateFile, names)}
	p.Running, p.RuntimeErr = rerr == nil, rerr
	if p.Running {
		file := NewFile(data) // one split for every backend below
		for _, s := range specs {
			if b.Dynamic[s.Backend] && !missing[s.Backend] {
				continue
			}
			for _, n := range file.SlotsIn(s.Backend) {
				if _, ok := running[s.Backend][n]; !ok {
					p.Stale = append(p.Stale, s.Backend)
					break
				}
			}
		}
		for _, c := range changes {
			if len(c.Updated) > 0 {
				p.OptionsChanged = append(p.OptionsChanged, c.Backend)
			}
		}
		if len(changes) > 0 || len(p.Stale) > 0 {
			for _, s := range specs {
				states := map[int]SlotState{}
				for n := range running[s.Backend] {
					states[n] = slotState(n, running[s.Backend])
				}
				if err := file.RefreshSlots(s.Backend, states, s.Options); err != nil {
					return BootstrapPlan{}, err
				}
			}
			data = file.Bytes()
		}
	}
	if err := Verify(data, specs); err != nil {
		return BootstrapPlan{}, fmt.Errorf("%s: %w", b.ConfigFile, err)
	}
	p.Data, p.Changed = data, !bytes.Equal(data, cur)
	return p, nil
}

// runningSlots reads the slot servers each backend has in the running
// HAProxy; a backend HAProxy does not know (missing) has none.
func runningSlots(ctx context.Context, rt Runtime, specs []SlotSpec) (map[string]map[int]runtime.ServerState, map[string]bool, error) {
	cmds := make([]runtime.Command, 0, len(specs))
	for _, s := range specs {
		c, err := runtime.ShowServersState(s.Backend)
		if err != nil {
			return nil, nil, err
		}
		cmds = append(cmds, c)
	}
	results, err := rt.Exec(ctx, cmds...)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]map[int]runtime.ServerState, len(specs))
	missing := map[string]bool{}
	for i, s := range specs {
		states := map[int]runtime.ServerState{}
		out[s.Backend] = states
		if results[i].Err != nil {
			if errors.Is(results[i].Err, runtime.ErrNoSuchBackend) {
				missing[s.Backend] = true
				continue
			}
			return nil, nil, results[i].Err
		}
		servers, err := runtime.ParseServersState(results[i].Answer)
		if err != nil {
			return nil, nil, err
		}
		for _, srv := range servers {
			if n, ok := slot.Index(srv.Name); ok {
				states[n] = srv
			}
		}
	}
	return out, missing, nil
}

// Apply writes the file (checked by `haproxy -c`) when it changed and
// reloads HAProxy when it runs without the slots. It returns whether it
// reloaded.
func (b *Bootstrap) Apply(ctx context.Context, p BootstrapPlan) (bool, error) {
	if p.NeedsReload() && b.StateFile != "" {
		// Before the file changes: a state that cannot be saved stops here.
		if err := DumpState(ctx, b.Runtime, b.StateFile); err != nil {
			return false, fmt.Errorf("saving runtime state before the reload: %w", err)
		}
	}
	if p.Changed {
		if err := WriteChecked(ctx, b.Binary, b.ConfigFile, p.Data); err != nil {
			return false, err
		}
		for _, c := range p.Changes {
			b.Log.Info().Str("backend", c.Backend).Strs("added", c.Added).Bool("created", c.Created).
				Str("file", b.ConfigFile).Msg("added slot lines to the haproxy config")
		}
	}
	for _, w := range p.Warnings {
		b.Log.Warn().Str("file", b.ConfigFile).Msg(w)
	}
	if !p.NeedsReload() {
		if p.Changed && !p.Running {
			b.Log.Warn().Err(p.RuntimeErr).Msg("haproxy does not answer on its stats socket; it will load the slots when it starts")
		}
		return false, nil
	}
	if len(p.Stale) > 0 {
		b.Log.Warn().Strs("backends", p.Stale).Msg("the running haproxy lacks slot lines its config file has: reloading")
	}
	if len(p.OptionsChanged) > 0 {
		b.Log.Warn().Strs("backends", p.OptionsChanged).Msg("server_options changed: reloading so that running slots take them")
	}
	if !p.Changed {
		if err := CheckData(ctx, b.Binary, b.ConfigFile, p.Data); err != nil {
			return false, err
		}
	}
	start := time.Now()
	pid, reloaded, err := reload(ctx, b.Master, b.Runtime)
	if err != nil {
		return reloaded, err
	}
	b.Log.Info().Int("pid", pid).Dur("took_ms", time.Since(start)).Msg("haproxy reloaded with the slot lines")
	return true, nil
}

// reload reloads HAProxy through the master CLI and waits, within
// ReloadTimeout, until the new worker serves the stats socket. reloaded
// tells whether a new worker started, also when waiting for it failed.
func reload(ctx context.Context, m *runtime.Master, rt Runtime) (pid int, reloaded bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, ReloadTimeout)
	defer cancel()
	procs, err := m.Reload(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("reloading haproxy through the master socket %s: %w", m.Socket, err)
	}
	w, _ := procs.Current()
	return w.PID, true, waitWorker(ctx, rt, w.PID)
}

// waitWorker waits until the stats socket is served by the worker pid.
func waitWorker(ctx context.Context, rt Runtime, pid int) error {
	var last error
	for {
		res, err := rt.Exec(ctx, runtime.ShowInfo())
		if err == nil && res[0].Err == nil {
			info, perr := runtime.ParseInfo(res[0].Answer)
			if perr == nil && info.Pid == pid {
				return nil
			}
			last = fmt.Errorf("stats socket still served by pid %d", info.Pid)
		} else if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the new haproxy worker %d on the stats socket: %v", pid, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
