package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
)

// BenchmarkPropagation measures, per trial, the time from sending a change
// to Consul to HAProxy's `show servers state` showing it, polling the stats
// socket as fast as it answers. Run with -benchtime=Nx for N trials; p50 and
// p99 are reported as custom metrics.
func BenchmarkPropagation(b *testing.B) {
	b.Run("check-flip", func(b *testing.B) {
		bed := newBenchBed(b)
		be := startBackend(b, "flip")
		bed.register("flip", be, 0)
		bed.waitSlot(be.endpoint(), runtime.StateReady, -1)
		var trials, consulOnly []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			status, want := api.HealthCritical, runtime.StateMaint
			if i%2 == 1 {
				status, want = api.HealthPassing, runtime.StateReady
			}
			answered := bed.consulAnswer(b)
			start := time.Now()
			bed.consul.SetCheck("flip", status)
			trials = append(trials, bed.pollSlot(be.endpoint(), want, start))
			consulOnly = append(consulOnly, answered(start))
		}
		reportPercentiles(b, trials, consulOnly)
	})
	b.Run("register-deregister", func(b *testing.B) {
		bed := newBenchBed(b)
		be := startBackend(b, "member")
		var trials, consulOnly []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			answered := bed.consulAnswer(b)
			start := time.Now()
			if i%2 == 0 {
				bed.register("member", be, 0)
				trials = append(trials, bed.pollSlot(be.endpoint(), runtime.StateReady, start))
			} else {
				bed.consul.Deregister("member")
				trials = append(trials, bed.pollSlot(be.endpoint(), runtime.StateMaint, start))
			}
			consulOnly = append(consulOnly, answered(start))
		}
		reportPercentiles(b, trials, consulOnly)
	})
}

// newBenchBed starts a bed with one stable instance, so that the instance
// a trial removes never leaves zero passing (which the empty guard holds).
func newBenchBed(b *testing.B) *bed {
	b.Helper()
	bd := newBed(b, bedOptions{minSlots: 8})
	bd.startHapctl()
	stable := startBackend(b, "stable")
	bd.register("stable", stable, 0)
	bd.waitSlot(stable.endpoint(), runtime.StateReady, -1)
	return bd
}

// pollSlot polls until the slot holding endpoint is in state and returns
// the time since start.
func (b *bed) pollSlot(endpoint string, state runtime.State, start time.Time) time.Duration {
	deadline := start.Add(10 * time.Second)
	for time.Now().Before(deadline) {
		servers, err := b.haproxy.TryServers("be_web")
		if err == nil {
			for _, s := range servers {
				if s.Endpoint() == endpoint && s.State() == state {
					return time.Since(start)
				}
			}
		}
	}
	b.t.Fatalf("%s not %s after 10s: %v", endpoint, state, b.slots())
	return 0
}

// consulAnswer starts a blocking query of its own on the service and
// returns a function that waits for Consul's answer and gives its time
// since start: Consul's share of a trial.
func (b *bed) consulAnswer(tb testing.TB) func(start time.Time) time.Duration {
	tb.Helper()
	_, meta, err := b.consul.Client.Health().Service("web", "", true, nil)
	if err != nil {
		tb.Fatal(err)
	}
	at := make(chan time.Time, 1)
	go func() {
		_, _, err := b.consul.Client.Health().Service("web", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		if err != nil {
			tb.Error(err)
		}
		at <- time.Now()
	}()
	return func(start time.Time) time.Duration { return (<-at).Sub(start) }
}

func reportPercentiles(b *testing.B, total, consulOnly []time.Duration) {
	if len(consulOnly) == 0 {
		reportTrials(b, "change sent -> HAProxy shows it", total)
		return
	}
	b.StopTimer()
	b.ReportMetric(pct(total, 0.50), "p50-ms")
	b.ReportMetric(pct(total, 0.99), "p99-ms")
	b.ReportMetric(pct(total, 1), "max-ms")
	b.ReportMetric(pct(consulOnly, 0.50), "consul-p50-ms")
	b.ReportMetric(pct(consulOnly, 0.99), "consul-p99-ms")
	b.Logf("%d trials: change sent -> HAProxy shows it p50 %.2f ms, p99 %.2f ms, max %.2f ms; change sent -> Consul answers a blocking query p50 %.2f ms, p99 %.2f ms",
		len(total), pct(total, 0.5), pct(total, 0.99), pct(total, 1), pct(consulOnly, 0.5), pct(consulOnly, 0.99))
}

// reportTrials reports the p50, p99 and max of trials, which measured what.
func reportTrials(b *testing.B, what string, trials []time.Duration) {
	b.StopTimer()
	b.ReportMetric(pct(trials, 0.50), "p50-ms")
	b.ReportMetric(pct(trials, 0.99), "p99-ms")
	b.ReportMetric(pct(trials, 1), "max-ms")
	b.Logf("%d trials: %s p50 %.2f ms, p99 %.2f ms, max %.2f ms", len(trials), what, pct(trials, 0.5), pct(trials, 0.99), pct(trials, 1))
}

// pct is the p-quantile of d in milliseconds.
func pct(d []time.Duration, p float64) float64 {
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Microseconds()) / 1000
}
