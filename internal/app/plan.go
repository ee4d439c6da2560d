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
	Name     string
	Service  string
	Snapshot hconsul.Snapshot
	Desired  sync.Desired
	Plan     sync.Plan
	Err      error
}

// NeedsReload reports whether the next start or sync would reload HAProxy.
func (r PlanReport) NeedsReload() bool { return r.Bootstrap.NeedsReload() }

// MakePlan reads Consul (one non-blocking query per service) and HAProxy
// and computes every backend's plan.
func MakePlan(ctx context.Context, cfg *config.Config) (PlanReport, error) {
	client, err := consulClient(cfg.Consul)
	if err != nil {
		return PlanReport{}, err
	}
	rt := &runtime.Client{Socket: cfg.HAProxy.RuntimeSocket}
	boot := &haproxycfg.Bootstrap{ConfigFile: cfg.HAProxy.ConfigFile, Binary: cfg.HAProxy.Binary, StateFile: cfg.HAProxy.StateFile, Runtime: rt}
	bp, err := boot.Plan(ctx, haproxycfg.SpecsFor(cfg.Backends))
	if err != nil {
		return PlanReport{}, err
	}
	report := PlanReport{ConfigFile: cfg.HAProxy.ConfigFile, Bootstrap: bp}
	snaps := map[string]hconsul.Snapshot{}
	for _, g := range watchGroups(cfg.Backends) {
		q := (&api.QueryOptions{Datacenter: cfg.Consul.Datacenter, AllowStale: cfg.Consul.AllowStale}).WithContext(ctx)
		entries, meta, err := client.Health().ServiceMultipleTags(g.service, g.tags, true, q)
		if err != nil {
			return PlanReport{}, fmt.Errorf("consul at %s: service %s: %w", cfg.Consul.Address, g.service, err)
		}
		valid, invalid := hconsul.FromEntries(entries)
		for _, b := range g.backends {
			snaps[b] = hconsul.Snapshot{Instances: valid, Invalid: invalid, Passing: len(entries), Index: meta.LastIndex, At: time.Now()}
		}
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
	for _, b := range cfg.Backends {
		bpl := BackendPlan{Name: b.Name, Service: b.Service, Snapshot: snaps[b.Name]}
		switch {
		case !bp.Running:
			bpl.Err = fmt.Errorf("haproxy does not answer on %s: %v", cfg.HAProxy.RuntimeSocket, bp.RuntimeErr)
		case actual.Errs[b.Name] != nil:
			bpl.Err = actual.Errs[b.Name]
		default:
			servers := withBootstrapSlots(actual.Servers[b.Name], bp.Data, b.Name)
			bpl.Desired = sync.Desire(sync.Input{Backend: b, Snapshot: bpl.Snapshot, Actual: servers})
			bpl.Plan = sync.MakePlan(bpl.Desired, servers)
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
	switch {
	case b.NeedsReload() && b.Changed:
		fmt.Fprintln(w, "reload: yes (new slot lines)")
	case b.NeedsReload():
		fmt.Fprintf(w, "reload: yes (the running haproxy lacks slot lines of %s)\n", strings.Join(b.Stale, ", "))
	case !b.Running:
		fmt.Fprintln(w, "reload: no (haproxy is not running)")
	default:
		fmt.Fprintln(w, "reload: no")
	}
	for _, bp := range r.Backends {
		fmt.Fprintf(w, "\nbackend %s (service %s)", bp.Name, bp.Service)
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
func withBootstrapSlots(servers []runtime.ServerState, cfgData []byte, backend string) []runtime.ServerState {
	have := map[string]bool{}
	for _, s := range servers {
		have[s.Name] = true
	}
	out := servers
	for _, n := range haproxycfg.SlotsInFile(cfgData, backend) {
		name := slot.Name(n)
		if !have[name] {
			out = append(out, runtime.ServerState{Backend: backend, Name: name, Addr: haproxycfg.PlaceholderEndpoint.Addr(), Port: int(haproxycfg.PlaceholderEndpoint.Port()), Weight: 1,
				Admin: runtime.AdminForcedMaint | runtime.AdminConfigMaint})
		}
	}
	return out
}
