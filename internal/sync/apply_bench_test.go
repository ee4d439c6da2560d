package sync_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/sync"
	"github.com/hapctl/hapctl/internal/testbed"
)

// BenchmarkApply1000 applies 1000 server changes to a real HAProxy through
// the executor: every iteration moves all 1000 slots to other instances
// (maint, addr, ready: 3000 commands in two batches). Only Apply is timed.
func BenchmarkApply1000(b *testing.B) {
	const n = 1000
	h := testbed.NewHAProxy(b)
	var cfg strings.Builder
	cfg.WriteString(h.Preamble() + "\nbackend be_web\n    balance roundrobin\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&cfg, "    server srv%d 127.0.0.1:1 disabled\n", i)
	}
	h.Start(cfg.String())
	be := config.Backend{Name: "be_web", MinSlots: n, MaxSlots: n}
	sets := [2][]consul.Instance{}
	for k := range sets {
		for i := 0; i < n; i++ {
			sets[k] = append(sets[k], consul.Instance{ID: fmt.Sprintf("i%d-%04d", k, i),
				Addr: netip.AddrFrom4([4]byte{10, byte(k), byte(i >> 8), byte(i)}), Port: 8080, Weight: 1})
		}
	}
	ctx := context.Background()
	commands := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		actual := h.Servers("be_web")
		d := sync.Desire(sync.Input{Backend: be, Snapshot: consul.Snapshot{Instances: sets[i%2], Passing: n}, Actual: actual})
		p := sync.MakePlan(d, actual)
		commands += len(p.Ops)
		b.StartTimer()
		res, err := sync.Apply(ctx, h.Runtime, p.Ops)
		if err != nil || res.OK != len(p.Ops) {
			b.Fatalf("applied %+v of %d: %v", res, len(p.Ops), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(commands)/float64(b.N), "commands/op")
	for _, s := range h.Servers("be_web") {
		if s.State() != runtime.StateReady {
			b.Fatalf("%s is %s after the last apply", s.Name, s.State())
		}
	}
}
