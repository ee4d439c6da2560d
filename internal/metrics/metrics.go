// Package metrics holds hapctl's Prometheus metrics (README.md, "Admin API").
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Results of runtime commands.
const (
	ResultOK      = "ok"
	ResultError   = "error"
	ResultSkipped = "skipped"
)

// Reasons for reloads.
const (
	// ReloadBootstrap: slot lines were added at start.
	ReloadBootstrap = "bootstrap"
	// ReloadGrow and ReloadShrink: a reload-mode backend changed its slot
	// count.
	ReloadGrow   = "grow"
	ReloadShrink = "shrink"
)

// ReloadStages are the stages a reload attempt can fail at.
var ReloadStages = []string{"render", "check", "write", "reload", "verify"}

// Metrics are the collectors of one hapctl process, on their own registry.
type Metrics struct {
	Registry         *prometheus.Registry
	SyncDuration     prometheus.Histogram
	Propagation      prometheus.Histogram
	RuntimeCommands  *prometheus.CounterVec
	Reloads          *prometheus.CounterVec
	ReloadFailures   *prometheus.CounterVec
	ConsulErrors     prometheus.Counter
	Slots            *prometheus.GaugeVec
	InvalidInstances *prometheus.CounterVec
	Unplaced         *prometheus.GaugeVec
	EmptyGuard       *prometheus.GaugeVec
}

// New registers every metric on a new registry, with Go and process metrics.
func New() *Metrics {
	latency := prometheus.ExponentialBuckets(0.0005, 2, 15) // 0.5 ms … 8 s
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hapctl_sync_duration_seconds", Help: "Time of one sync cycle: read HAProxy state, plan, apply.", Buckets: latency,
		}),
		Propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hapctl_propagation_seconds", Help: "From Consul's answer arriving to HAProxy acknowledging the runtime commands.", Buckets: latency,
		}),
		RuntimeCommands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapctl_runtime_commands_total", Help: "Runtime API commands sent to HAProxy, by result (ok, error, skipped).",
		}, []string{"result"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapctl_reloads_total", Help: "HAProxy reloads hapctl asked for, by reason.",
		}, []string{"reason"}),
		ReloadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapctl_reload_failures_total", Help: "Attempts to change slots through the config file that failed, by stage (render, check, write, reload, verify).",
		}, []string{"stage"}),
		ConsulErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hapctl_consul_errors_total", Help: "Consul queries that failed.",
		}),
		Slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapctl_slots", Help: "Slots of each managed backend by state (ready, drain, maint, free).",
		}, []string{"backend", "state"}),
		InvalidInstances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapctl_invalid_instances_total", Help: "Consul instances skipped because a value failed validation.",
		}, []string{"backend"}),
		Unplaced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapctl_unplaced_instances", Help: "Passing instances that got no slot.",
		}, []string{"backend"}),
		EmptyGuard: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapctl_empty_guard", Help: "1 while the empty guard keeps a backend's last set because Consul reports no passing instance.",
		}, []string{"backend"}),
	}
	m.Registry.MustRegister(m.SyncDuration, m.Propagation, m.RuntimeCommands, m.Reloads, m.ReloadFailures, m.ConsulErrors,
		m.Slots, m.InvalidInstances, m.Unplaced, m.EmptyGuard,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{ResultOK, ResultError, ResultSkipped} {
		m.RuntimeCommands.WithLabelValues(r)
	}
	for _, r := range []string{ReloadBootstrap, ReloadGrow, ReloadShrink} {
		m.Reloads.WithLabelValues(r)
	}
	for _, s := range ReloadStages {
		m.ReloadFailures.WithLabelValues(s)
	}
	return m
}

// InitBackends creates every per-backend series at zero, so that a backend
// with nothing to report shows 0 rather than no series.
func (m *Metrics) InitBackends(names []string) {
	for _, b := range names {
		m.InvalidInstances.WithLabelValues(b)
		m.Unplaced.WithLabelValues(b)
		m.EmptyGuard.WithLabelValues(b)
		for _, st := range []string{"ready", "drain", "maint", "free"} {
			m.Slots.WithLabelValues(b, st)
		}
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
