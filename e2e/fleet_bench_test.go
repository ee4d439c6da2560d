package e2e

import (
	"testing"
	"time"

	hapi "github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/runtime"
)

// BenchmarkFleetDrain measures, per trial, the time from a drain (or
// undrain) call to one node's admin API until every node of a 3-node fleet
// (three HAProxy + hapctl pairs on one Consul) shows it in `show servers
// state`. Trials alternate drain and undrain of one instance and rotate the
// node called. Run with -benchtime=Nx for N trials.
func BenchmarkFleetDrain(b *testing.B) {
	f := newFleet(b, 3, bedOptions{minSlots: 4})
	stable, target := startBackend(b, "stable"), startBackend(b, "target")
	f.nodes[0].register("stable", stable, 0)
	f.nodes[0].register("target", target, 0)
	for _, n := range f.nodes {
		n.startHapctl()
	}
	for _, n := range f.nodes {
		n.waitSlot(target.endpoint(), runtime.StateReady, -1)
	}
	var all, call []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		action, want := hapi.ActionDrain, runtime.StateDrain
		if i%2 == 1 {
			action, want = hapi.ActionUndrain, runtime.StateReady
		}
		node := f.nodes[i%len(f.nodes)]
		start := time.Now()
		var res hapi.OverrideResult
		if code := post(b, node, "", "/v1/backends/be_web/servers/target/"+action, `{"reason":"bench"}`, &res); code != 200 || !res.Applied {
			b.Fatalf("%s on node %d: %d %+v", action, i%len(f.nodes), code, res)
		}
		call = append(call, time.Since(start))
		all = append(all, f.pollAll(b, target.endpoint(), want, start))
	}
	b.StopTimer()
	b.ReportMetric(pct(call, 0.50), "call-p50-ms")
	b.ReportMetric(pct(call, 0.99), "call-p99-ms")
	b.ReportMetric(pct(all, 0.50), "fleet-p50-ms")
	b.ReportMetric(pct(all, 0.99), "fleet-p99-ms")
	b.ReportMetric(pct(all, 1), "fleet-max-ms")
	b.Logf("%d trials, 3 nodes: call returns (applied on the node called) p50 %.2f ms, p99 %.2f ms; applied on every node p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		len(all), pct(call, 0.5), pct(call, 0.99), pct(all, 0.5), pct(all, 0.99), pct(all, 1))
}

// pollAll polls every node in turn until each shows the slot holding
// endpoint in state, and returns the time since start of the last one.
func (f *fleet) pollAll(tb testing.TB, endpoint string, state runtime.State, start time.Time) time.Duration {
	done := make([]bool, len(f.nodes))
	left := len(f.nodes)
	var last time.Duration
	deadline := start.Add(10 * time.Second)
	for left > 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("%s not %s on every node after 10s: %v", endpoint, state, done)
		}
		for j, n := range f.nodes {
			if done[j] {
				continue
			}
			servers, err := n.haproxy.TryServers("be_web")
			if err != nil {
				continue
			}
			for _, s := range servers {
				if s.Endpoint() == endpoint && s.State() == state {
					done[j] = true
					left--
					last = time.Since(start)
				}
			}
		}
	}
	return last
}
