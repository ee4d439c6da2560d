package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/config"
	hconsul "github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/sync"
)

// PlanReport is what the next sync would do, computed without changing
// anything.
type PlanReport struct {
	ConfigFile string
	Bootstrap  haproxycfg.BootstrapPlan
	Backends   []BackendPlan
}

// BackendPlan is one backend's part of a PlanReport.
type BackendPlan struct {
	sync.Preview
	Service  string
	Snapshot hconsul.Snapshot
}

// NeedsReload reports whether the next start or sync would reload HAProxy.
func (r PlanReport) NeedsReload() bool {
	if r.Bootstrap.NeedsReload() {
		return true
	}
	for _, b := range r.Backends {
		if b.GrowBy == config.GrowthReload {
			return true
		}
	}
	return false
}

// MakePlan reads Consul (one non-blocking query per service) and HAProxy
// and computes every backend's plan.
func MakePlan(ctx context.Context, cfg *config.Config) (PlanReport, error) {
	client, health, err := consulClient(cfg.Consul)
	if err != nil {
		return PlanReport{}, err
	}
	rt := &runtime.Client{Socket: cfg.HAProxy.RuntimeSocket}
	growth, err := readGrowthModes(cfg)
	if err != nil {
		return PlanReport{}, err
	}
	boot := &haproxycfg.Bootstrap{ConfigFile: cfg.HAProxy.ConfigFile, Binary: cfg.HAProxy.Binary, StateFile: cfg.HAProxy.StateFile,
		Runtime: rt, Dynamic: growth.dynamic}
	bp, err := boot.Plan(ctx, haproxycfg.SpecsFor(cfg.Backends))
	if err != nil {
		return PlanReport{}, err
	}
	report := PlanReport{ConfigFile: cfg.HAProxy.ConfigFile, Bootstrap: bp}
	snaps := map[string]hconsul.Snapshot{}
	for _, g := range watchGroups(cfg.Backends) {
		q := (&api.QueryOptions{Datacenter: cfg.Consul.Datacenter, AllowStale: cfg.Consul.AllowStale}).WithContext(ctx)
		entries, meta, err := health.ServiceMultipleTags(g.service, g.tags, true, q)
		if err != nil {
			return PlanReport{}, fmt.Errorf("consul at %s: service %s: %w", cfg.Consul.Address, g.service, err)
		}
		valid, invalid := hconsul.FromEntries(entries)
		for _, b := range g.backends {
			snaps[b] = hconsul.Snapshot{Instances: valid, Invalid: invalid, Passing: len(entries), Index: meta.LastIndex, At: time.Now()}
		}
	}
	drains, err := drainKV(client, cfg.Consul).Read(ctx, cfg.Consul.AllowStale)
	if err != nil {
		return PlanReport{}, fmt.Errorf("consul at %s: %w", cfg.Consul.Address, err)
	}
	var actual sync.Actual
	if bp.Running {
		names := make([]string, len(cfg.Backends))
		for i, b := range cfg.Backends {
			names[i] = b.Name
		}
		if actual, err = sync.ReadActual(ctx, rt, names); err != nil {
			return PlanReport{}, fmt.Errorf("reading haproxy state: %w", err)
		}
	}
	cfgFile := haproxycfg.NewFile(bp.Data) // split once for every backend
	for _, b := range cfg.Backends {
		bpl := BackendPlan{Preview: sync.Preview{Backend: b.Name}, Service: b.Service, Snapshot: snaps[b.Name]}
		switch {
		case !bp.Running:
			bpl.Err = fmt.Errorf("haproxy does not answer on %s: %v", cfg.HAProxy.RuntimeSocket, bp.RuntimeErr)
		case actual.Errs[b.Name] != nil:
			bpl.Err = actual.Errs[b.Name]
		default:
			servers := actual.Servers[b.Name]
			if bp.NeedsReload() {
				servers = withBootstrapSlots(servers, cfgFile, b.Name)
			}
			in := sync.Input{Backend: b, Snapshot: bpl.Snapshot, Actual: servers, Overrides: drains[b.Name]}
			bpl.Preview = sync.PreviewBackend(in, growth.dynamic[b.Name])
		}
		report.Backends = append(report.Backends, bpl)
	}
	return report, nil
}

// Print writes the report for a person.
func (r PlanReport) Print(w io.Writer) {
	b := r.Bootstrap
	switch {
	case b.Changed:
		fmt.Fprintf(w, "haproxy config %s would change:\n", r.ConfigFile)
		for _, c := range b.Changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
	default:
		fmt.Fprintf(w, "haproxy config %s: no change\n", r.ConfigFile)
	}
	for _, warning := range b.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	var growByReload []string
	for _, bp := range r.Backends {
		if bp.GrowBy == config.GrowthReload {
			growByReload = append(growByReload, bp.Backend)
		}
	}
	switch {
	case len(b.OptionsChanged) > 0:
		fmt.Fprintf(w, "reload: yes (new server_options for %s)\n", strings.Join(b.OptionsChanged, ", "))
	case len(b.Stale) > 0:
		fmt.Fprintf(w, "reload: yes (the running haproxy lacks slot lines of %s)\n", strings.Join(b.Stale, ", "))
	case len(growByReload) > 0:
		fmt.Fprintf(w, "reload: yes (%s must grow)\n", strings.Join(growByReload, ", "))
	case !b.Running:
		fmt.Fprintln(w, "reload: no (haproxy is not running)")
	default:
		fmt.Fprintln(w, "reload: no")
	}
	for _, bp := range r.Backends {
		fmt.Fprintf(w, "\nbackend %s (service %s)", bp.Backend, bp.Service)
		if bp.Err != nil {
			fmt.Fprintf(w, ": %v\n", bp.Err)
			continue
		}
		fmt.Fprintf(w, ": %d passing, %d invalid, %d slots, %d bound, %d unplaced\n",
			len(bp.Snapshot.Instances), len(bp.Snapshot.Invalid), len(bp.Desired.Slots), bp.Desired.Bound(), len(bp.Desired.Unplaced))
		for _, inv := range bp.Snapshot.Invalid {
			fmt.Fprintf(w, "  skipped invalid instance %s (node %s): %s\n", inv.ID, inv.Node, inv.Reason)
		}
		if bp.Plan.Guarded {
			fmt.Fprintln(w, "  empty guard: consul reports no passing instance; the last set stays")
		}
		switch bp.GrowBy {
		case config.GrowthDynamic:
			fmt.Fprintf(w, "  grows from %d to %d slots with add server (no reload)\n", bp.GrowFrom, bp.GrowTo)
		case config.GrowthReload:
			fmt.Fprintf(w, "  grows from %d to %d slots by a reload\n", bp.GrowFrom, bp.GrowTo)
		}
		if len(bp.Plan.Ops) == 0 {
			fmt.Fprintln(w, "  no runtime changes")
		}
		for _, o := range bp.Plan.Ops {
			fmt.Fprintf(w, "  %s\n", o)
		}
	}
}

// withBootstrapSlots adds the free slots the config file will give the
// backend (after the bootstrap reload) that HAProxy does not run yet, so the
// plan shows what the daemon will do.
func withBootstrapSlots(servers []runtime.ServerState, cfgFile *haproxycfg.File, backend string) []runtime.ServerState {
	have := map[string]bool{}
	for _, s := range servers {
		have[s.Name] = true
	}
	out := servers
	for _, n := range cfgFile.SlotsIn(backend) {
		name := slot.Name(n)
		if !have[name] {
			out = append(out, runtime.ServerState{Backend: backend, Name: name, Addr: haproxycfg.PlaceholderEndpoint.Addr(), Port: int(haproxycfg.PlaceholderEndpoint.Port()), Weight: 1,
				Admin: runtime.AdminForcedMaint | runtime.AdminConfigMaint})
		}
	}
	return out
}
