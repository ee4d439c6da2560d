package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	gosync "sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/config"
	hconsul "github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/metrics"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/sync"
)

// connWarn is the number of blocking queries above which hapctl warns about
// Consul's per-client connection limit (200 by default; other clients on
// the host count too).
const connWarn = 150

// Daemon is a running hapctl.
type Daemon struct {
	cfg      *config.Config
	log      zerolog.Logger
	store    *hconsul.Store
	loop     *sync.Loop
	reloader *haproxycfg.Reloader
	probe    *hconsul.Probe
}

// growthModes says how each backend gets more slots, as far as the HAProxy
// config tells.
type growthModes struct {
	dynamic    map[string]bool   // backends that grow with `add server`
	notDynamic map[string]string // growth: dynamic backends that cannot, with why
	// defaultServer lists dynamic backends with default-server settings,
	// which slots added at runtime do not inherit.
	defaultServer []string
}

func readGrowthModes(cfg *config.Config) (growthModes, error) {
	data, err := os.ReadFile(cfg.HAProxy.ConfigFile)
	if err != nil {
		return growthModes{}, fmt.Errorf("reading haproxy config: %w", err)
	}
	parsed, err := haproxycfg.Parse(data)
	if err != nil {
		return growthModes{}, fmt.Errorf("%s: %w", cfg.HAProxy.ConfigFile, err)
	}
	g := growthModes{dynamic: map[string]bool{}, notDynamic: map[string]string{}}
	for _, b := range cfg.Backends {
		if b.Growth != config.GrowthDynamic {
			continue
		}
		if why := parsed.DynamicSupport(b.Name, b.ServerOptions); why != "" {
			g.notDynamic[b.Name] = why
			continue
		}
		g.dynamic[b.Name] = true
		if parsed.DefaultServer(b.Name) {
			g.defaultServer = append(g.defaultServer, b.Name)
		}
	}
	return g, nil
}

// RunDaemon bootstraps the slots, then watches Consul and syncs HAProxy
// until ctx ends. HAProxy is left exactly as it is when it returns.
func RunDaemon(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	m := metrics.New()
	names := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		names[i] = b.Name
	}
	m.InitBackends(names)
	rt := &runtime.Client{Socket: cfg.HAProxy.RuntimeSocket}
	client, health, err := consulClient(cfg.Consul)
	if err != nil {
		return err
	}

	// The API address is taken first: a busy port stops hapctl before it
	// changes anything in HAProxy.
	ln, err := api.Listen(cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen %s: %w", cfg.API.Listen, err)
	}
	defer func() { _ = ln.Close() }()
	if addr := os.Getenv(PprofEnv); addr != "" {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		if err := servePprof(pctx, addr, log); err != nil {
			return err
		}
	}

	growth, err := readGrowthModes(cfg)
	if err != nil {
		return err
	}
	for _, b := range growth.defaultServer {
		log.Warn().Str("backend", b).Msg("the backend or its defaults has default-server settings, which slots added at runtime do not inherit: put them in server_options")
	}
	for b, why := range growth.notDynamic {
		log.Warn().Str("backend", b).Str("why", why).Msg("growth: dynamic is not possible for this backend: it grows by reload")
	}
	master := &runtime.Master{Socket: cfg.HAProxy.MasterSocket, Timeout: 10 * time.Second}
	boot := &haproxycfg.Bootstrap{
		ConfigFile: cfg.HAProxy.ConfigFile, Binary: cfg.HAProxy.Binary, StateFile: cfg.HAProxy.StateFile,
		Runtime: rt, Master: master, Log: log, Dynamic: growth.dynamic,
	}
	plan, err := boot.Plan(ctx, haproxycfg.SpecsFor(cfg.Backends))
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	reloaded, err := boot.Apply(ctx, plan)
	if reloaded {
		m.Reloads.WithLabelValues(metrics.ReloadBootstrap).Inc()
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}

	d := &Daemon{cfg: cfg, log: log, store: hconsul.NewStore(),
		probe: &hconsul.Probe{Status: client.Status(), RequireLeader: !cfg.Consul.AllowStale, Log: log,
			OnError: func(error) { m.ConsulErrors.Inc() }}}
	d.reloader = &haproxycfg.Reloader{
		ConfigFile: cfg.HAProxy.ConfigFile, Binary: cfg.HAProxy.Binary, StateFile: cfg.HAProxy.StateFile,
		Backends: haproxycfg.SpecsFor(cfg.Backends), Runtime: rt, Master: master,
		MinInterval: cfg.HAProxy.ReloadMinInterval, Log: log,
		OnReload:  func(reason string) { m.Reloads.WithLabelValues(reason).Inc() },
		OnFailure: func(stage string) { m.ReloadFailures.WithLabelValues(stage).Inc() },
	}
	d.loop = &sync.Loop{Backends: cfg.Backends, Source: d.store, Runtime: rt, Metrics: m, Log: log,
		Resizer: d.reloader, NoDynamic: growth.notDynamic}
	d.reloader.OnDone = d.loop.Kick

	kv := drainKV(client, cfg.Consul)
	svc := newService(cfg, d.loop, d.store, rt, kv)
	srv := api.NewHTTPServer((&api.Server{Ready: d, Service: svc, Metrics: m.Handler(), Token: cfg.API.Token, Log: log}).Routes())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
			cancel()
		}
	}()
	groups := watchGroups(cfg.Backends)
	if n := len(groups) + 1; n > connWarn {
		log.Warn().Int("blocking_queries", n).Msg("hapctl holds this many blocking queries to consul, one per (service, tags) pair and one for drains; " +
			"the agent refuses more than limits.http_max_conns_per_client (default 200) from one host: raise it above this")
	}
	for _, g := range groups {
		w := &hconsul.Watch{
			Service: g.service, Tags: g.tags, Backends: g.backends,
			Datacenter: cfg.Consul.Datacenter, AllowStale: cfg.Consul.AllowStale,
			Health: health, Store: d.store, Log: log,
			OnInvalid: func(backends []string, _ hconsul.Invalid) {
				for _, b := range backends {
					m.InvalidInstances.WithLabelValues(b).Inc()
				}
			},
			OnError: func(error) { m.ConsulErrors.Inc() },
			Probe:   d.probe,
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(ctx) }()
	}
	drains := &hconsul.DrainWatch{DrainKV: kv, AllowStale: cfg.Consul.AllowStale, Store: d.store, Log: log,
		OnError: func(error) { m.ConsulErrors.Inc() }, Probe: d.probe}
	wg.Add(3)
	go func() { defer wg.Done(); drains.Run(ctx) }()
	go func() { defer wg.Done(); d.probe.Run(ctx) }()
	go func() { defer wg.Done(); d.reloader.Run(ctx) }()
	log.Info().Str("api", cfg.API.Listen).Int("backends", len(cfg.Backends)).Msg("hapctl running")
	d.loop.Run(ctx)

	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	select {
	case err := <-serveErr:
		return fmt.Errorf("admin api: %w", err)
	default:
	}
	log.Info().Msg("hapctl stopped; haproxy left as it is")
	return nil
}

// Ready implements api.Readiness: the last sync succeeded, HAProxy answers,
// and Consul answered every backend's query.
func (d *Daemon) Ready() (bool, string) {
	st := d.loop.Status()
	var reasons []string
	if st.HAProxyErr != nil {
		reasons = append(reasons, "haproxy does not answer: "+st.HAProxyErr.Error())
	}
	if err := d.probe.Err(); err != nil {
		reasons = append(reasons, "consul agent does not answer: "+err.Error())
	}
	errs := d.store.Errors()
	for _, b := range d.cfg.Backends {
		if err, ok := errs[b.Name]; ok {
			reasons = append(reasons, fmt.Sprintf("consul query for %s failed: %v", b.Name, err))
		}
	}
	for _, b := range d.cfg.Backends {
		if _, ok := d.store.Snapshot(b.Name); !ok {
			reasons = append(reasons, "no answer from consul yet for "+b.Name)
		} else if _, synced := st.Backends[b.Name]; !synced && st.HAProxyErr == nil {
			reasons = append(reasons, "not synced yet: "+b.Name)
		}
	}
	switch loaded, err := d.store.DrainsStatus(); {
	case err != nil:
		reasons = append(reasons, "reading drains from consul kv failed: "+err.Error())
	case !loaded:
		reasons = append(reasons, "drains not read from consul kv yet")
	}
	switch {
	case st.LastErr != nil:
		reasons = append(reasons, "last sync failed: "+st.LastErr.Error())
	case st.LastSync.IsZero():
		reasons = append(reasons, "no sync yet")
	}
	if rs := d.reloader.Status(); rs.Err != nil {
		reasons = append(reasons, fmt.Sprintf("changing slots through the haproxy config failed (%d times, next try in %s): %v",
			rs.Failures, time.Until(rs.RetryAt).Round(time.Millisecond), rs.Err))
	}
	for _, b := range d.cfg.Backends {
		if bs, ok := st.Backends[b.Name]; ok && bs.Desired.Guarded {
			reasons = append(reasons, "empty guard holds "+b.Name+": consul reports no passing instance")
		}
	}
	if len(reasons) > 0 {
		return false, strings.Join(reasons, "; ")
	}
	return true, ""
}
