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
// the executor; only Apply is timed.
//
//	place: 1000 free slots (maint) get instances: addr + ready, 2000 commands
//	move:  1000 slots in service move to other instances: one sync takes
//	       them out (maint), the next reads HAProxy's state again, plans and
//	       re-binds them (addr + ready); 3000 commands, all of it timed
//
// HAProxy logs a warning per server state change; "logged" writes them to
// stderr as a foreground HAProxy does, "quiet" runs it with -q.
func BenchmarkApply1000(b *testing.B) {
	for _, quiet := range []bool{false, true} {
		name := "logged"
		if quiet {
			name = "quiet"
		}
		b.Run(name, func(b *testing.B) { benchApply1000(b, quiet) })
	}
}

func benchApply1000(b *testing.B, quiet bool) {
	const n = 1000
	h := testbed.NewHAProxy(b)
	h.Quiet = quiet
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
	plan := func(b *testing.B, instances []consul.Instance) []sync.Op {
		actual := h.Servers("be_web")
		d := sync.Desire(sync.Input{Backend: be, Snapshot: consul.Snapshot{Instances: instances, Passing: len(instances)}, Actual: actual})
		return sync.MakePlan(d, actual).Ops
	}
	apply := func(b *testing.B, ops []sync.Op) {
		res, err := sync.Apply(ctx, h.Runtime, ops)
		if err != nil || res.OK != len(ops) {
			b.Fatalf("applied %+v of %d: %v", res, len(ops), err)
		}
	}
	b.Run("place", func(b *testing.B) {
		commands := 0
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			apply(b, plan(b, nil)) // every slot free again (empty guard is off)
			ops := plan(b, sets[i%2])
			commands += len(ops)
			b.StartTimer()
			apply(b, ops)
		}
		b.ReportMetric(float64(commands)/float64(b.N), "commands/op")
	})
	b.Run("move", func(b *testing.B) {
		b.StopTimer()
		apply(b, plan(b, sets[1]))
		commands := 0
		for i := 0; i < b.N; i++ {
			ops := plan(b, sets[i%2])
			b.StartTimer()
			apply(b, ops) // out of service
			again := plan(b, sets[i%2])
			apply(b, again) // in again, at the new addresses
			b.StopTimer()
			commands += len(ops) + len(again)
		}
		b.ReportMetric(float64(commands)/float64(b.N), "commands/op")
	})
	for _, s := range h.Servers("be_web") {
		if s.State() != runtime.StateReady {
			b.Fatalf("%s is %s after the last apply", s.Name, s.State())
		}
	}
}
