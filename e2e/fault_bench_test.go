package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
)

// BenchmarkRecovery measures, per trial, how long hapctl takes to put
// HAProxy back in line after a fault ends: HAProxy restarted (from the
// socket answering to every slot restored) or reloaded by hand (from the
// reload returning), and a hung Consul agent resuming (to /readyz ready).
// Run with -benchtime=Nx for N trials.
func BenchmarkRecovery(b *testing.B) {
	for _, fault := range []struct {
		name, what string
		do         func(b *testing.B, bed *bed) // returns once the socket answers again
	}{
		{"haproxy-restart", "haproxy restarted, socket answers -> every slot restored", func(_ *testing.B, bed *bed) {
			bed.haproxy.Stop()
			bed.haproxy.Start("")
		}},
		{"haproxy-manual-reload", "reload by hand returns -> every slot restored", func(b *testing.B, bed *bed) {
			if _, err := bed.haproxy.Master.Reload(b.Context()); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		b.Run(fault.name, func(b *testing.B) {
			bed, want := newRecoveryBed(b)
			var trials []time.Duration
			for i := 0; i < b.N; i++ {
				fault.do(b, bed)
				trials = append(trials, bed.pollSlots(want, time.Now()))
			}
			reportTrials(b, fault.what, trials)
		})
	}
	b.Run("consul-resume", func(b *testing.B) {
		bed, _ := newRecoveryBed(b)
		var trials []time.Duration
		for i := 0; i < b.N; i++ {
			bed.consul.Pause()
			bed.readyzSays("consul agent does not answer", 15*time.Second)
			bed.consul.Resume()
			start := time.Now()
			for bed.ready() != nil {
				if time.Since(start) > 10*time.Second {
					b.Fatal("not ready 10s after consul resumed")
				}
				time.Sleep(time.Millisecond) // leave the CPU to hapctl
			}
			trials = append(trials, time.Since(start))
		}
		reportTrials(b, "hung consul agent resumed -> /readyz ready", trials)
	})
}

// newRecoveryBed starts a bed with three instances, one of them drained so
// that HAProxy's runtime state differs from its config file.
func newRecoveryBed(b *testing.B) (*bed, []string) {
	b.Helper()
	bd := newBed(b, bedOptions{minSlots: 4})
	var backends []*backend
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		be := startBackend(b, name)
		bd.register(name, be, 1)
		backends = append(backends, be)
	}
	bd.startHapctl()
	if code := post(b, bd, "", "/v1/backends/be_web/servers/web-1/drain", `{}`, nil); code != 200 {
		b.Fatalf("drain: %d", code)
	}
	for i, be := range backends {
		bd.waitSlot(be.endpoint(), []runtime.State{runtime.StateDrain, runtime.StateReady, runtime.StateReady}[i], -1)
	}
	b.ResetTimer()
	return bd, bd.slots()
}

// pollSlots polls until be_web's slots are want and returns the time since
// start.
func (b *bed) pollSlots(want []string, start time.Time) time.Duration {
	for time.Since(start) < 10*time.Second {
		if servers, err := b.haproxy.TryServers("be_web"); err == nil && slices.Equal(picture(servers), want) {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond) // leave the CPU and the socket to hapctl
	}
	b.t.Fatalf("slots not restored after 10s: %v, want %v", b.slots(), want)
	return 0
}

// BenchmarkFlap flips one instance's check at 10 changes a second, one flip
// per iteration, and reports hapctl's runtime commands and CPU per flip.
func BenchmarkFlap(b *testing.B) {
	bd := newBenchBed(b)
	be := startBackend(b, "flappy")
	bd.register("flappy", be, 0)
	bd.waitSlot(be.endpoint(), runtime.StateReady, -1)
	cmds := bd.metric(`hapctl_runtime_commands_total{result="ok"}`)
	cpu := bd.metric("process_cpu_seconds_total")
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-pace.C
		status := api.HealthCritical
		if i%2 == 1 {
			status = api.HealthPassing
		}
		bd.consul.SetCheck("flappy", status)
	}
	want := runtime.StateMaint
	if b.N%2 == 0 {
		want = runtime.StateReady
	}
	bd.pollSlot(be.endpoint(), want, time.Now())
	b.StopTimer()
	sent := bd.metric(`hapctl_runtime_commands_total{result="ok"}`) - cmds
	used := bd.metric("process_cpu_seconds_total") - cpu
	b.ReportMetric(sent/float64(b.N), "cmds/flip")
	b.ReportMetric(1000*used/float64(b.N), "cpu-ms/flip")
	b.Logf("%d flips at 10/s: %.0f runtime commands, %.2f s of hapctl CPU", b.N, sent, used)
}
