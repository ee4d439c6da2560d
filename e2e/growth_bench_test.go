package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// growthInstances is how many instances BenchmarkGrowth registers
// (HAPCTL_BENCH_GROWTH overrides it).
func growthInstances(b *testing.B) int {
	if s := os.Getenv("HAPCTL_BENCH_GROWTH"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("HAPCTL_BENCH_GROWTH=%q: want a positive number", s)
		}
		return n
	}
	return 1000
}

// BenchmarkGrowth registers 1000 instances at once (8 registrations in
// flight) into a backend with 8 slots, under keep-alive HTTP load through
// HAProxy's frontend, and reports the reloads it cost, failed requests and
// the time until every instance serves. One iteration per mode is the
// measurement: run with -benchtime 1x.
func BenchmarkGrowth(b *testing.B) {
	for _, mode := range []string{"reload", "dynamic"} {
		b.Run(mode, func(b *testing.B) {
			n := growthInstances(b)
			for i := 0; i < b.N; i++ {
				benchGrowth(b, mode, n)
			}
		})
	}
}

func benchGrowth(b *testing.B, mode string, n int) {
	b.StopTimer()
	bd := newBed(b, bedOptions{minSlots: 8, growth: mode})
	backends := make([]*backend, n)
	for i := range backends {
		backends[i] = startBackend(b, fmt.Sprintf("web-%d", i+1))
	}
	bd.register("web-1", backends[0], 0)
	bd.startHapctl()
	bd.waitSlot(backends[0].endpoint(), runtime.StateReady, -1)
	ld := startLoad(b, bd.frontend, 4, time.Millisecond)
	ld.waitMore(b, 100)
	reloads := bd.haproxy.Procs().Master.Reloads
	b.StartTimer()

	start := time.Now()
	if err := registerAll(bd, backends[1:]); err != nil {
		b.Fatal(err)
	}
	registered := time.Since(start)
	want := map[string]bool{}
	for _, be := range backends {
		want[be.endpoint()] = true
	}
	deadline := start.Add(2 * time.Minute)
	for {
		servers, err := bd.haproxy.TryServers("be_web")
		ready := 0
		if err == nil {
			for _, s := range servers {
				if s.State() == runtime.StateReady && want[s.Endpoint()] {
					ready++
				}
			}
		}
		if ready == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d instances serving after 2 minutes", ready, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	serving := time.Since(start)
	b.StopTimer()
	ld.waitMore(b, 100)
	ld.finish()
	slots := len(bd.slots())
	got := bd.haproxy.Procs().Master.Reloads - reloads
	b.ReportMetric(float64(got), "reloads")
	b.ReportMetric(float64(ld.failed.Load()), "failed-requests")
	b.ReportMetric(float64(ld.sent.Load()), "requests")
	b.ReportMetric(serving.Seconds(), "s-to-all-serving")
	b.ReportMetric(float64(slots), "slots")
	b.Logf("%s: 1 → %d instances (registered in %s): %d reloads, %d slots, all serving after %s; %d of %d requests failed",
		mode, n, registered.Round(time.Millisecond), got, slots, serving.Round(time.Millisecond), ld.failed.Load(), ld.sent.Load())
	if f := ld.failed.Load(); f != 0 {
		b.Errorf("%d requests failed: %v", f, ld.errors)
	}
}

// registerAll registers every backend as an instance of web, 8 at a time.
func registerAll(bd *bed, backends []*backend) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan *backend)
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for be := range next {
				reg := &api.AgentServiceRegistration{ID: be.name, Name: "web", Address: be.host, Port: be.port,
					Check: &api.AgentServiceCheck{CheckID: testbed.CheckID(be.name), TTL: "10m", Status: api.HealthPassing}}
				if err := bd.consul.Client.Agent().ServiceRegister(reg); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, be := range backends {
		next <- be
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// BenchmarkNewSlotToServing measures, per trial, the time from registering
// an instance that needs a new slot to HAProxy serving it: each trial uses
// its own backend (one slot, one stable instance), so every trial grows one.
// Run with -benchtime=Nx for N trials (at most 40).
func BenchmarkNewSlotToServing(b *testing.B) {
	for _, mode := range []string{"reload", "dynamic"} {
		b.Run(mode, func(b *testing.B) {
			if b.N > 40 {
				b.Fatalf("at most 40 trials, got %d", b.N)
			}
			mb := newMultiBed(b, mode, b.N)
			var trials []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				be := startBackend(b, fmt.Sprintf("grow-%d", i))
				svc := fmt.Sprintf("svc%d", i)
				start := time.Now()
				mb.consul.Register(&api.AgentServiceRegistration{ID: "grow-" + svc, Name: svc, Address: be.host, Port: be.port}, api.HealthPassing)
				trials = append(trials, mb.pollServing("be_"+svc, be.endpoint(), start))
			}
			b.StopTimer()
			reportPercentiles(b, trials, nil)
		})
	}
}

// multiBed is Consul, HAProxy and hapctl with n backends be_svcI of one
// slot each, every one holding one stable instance of service svcI.
type multiBed struct {
	consul  *testbed.Consul
	haproxy *testbed.HAProxy
	t       testing.TB
}

func newMultiBed(b *testing.B, mode string, n int) *multiBed {
	b.Helper()
	mb := &multiBed{consul: testbed.StartConsul(b), haproxy: testbed.NewHAProxy(b), t: b}
	var cfg, backends strings.Builder
	cfg.WriteString(mb.haproxy.Preamble())
	for i := 0; i < n; i++ {
		fmt.Fprintf(&cfg, "\nbackend be_svc%d\n    balance roundrobin\n", i)
		fmt.Fprintf(&backends, "  - {name: be_svc%d, service: svc%d, min_slots: 1, growth: %s}\n", i, i, mode)
	}
	mb.haproxy.Start(cfg.String())
	cfgPath := filepath.Join(mb.haproxy.Dir, "hapctl.yaml")
	testbed.WriteFile(b, cfgPath, fmt.Sprintf(`consul: {address: %s}
haproxy: {config_file: %s, runtime_socket: %s, master_socket: %s, state_file: %s, binary: %s, reload_min_interval: 10ms}
api: {listen: 127.0.0.1:%d}
backends:
%s`, mb.consul.Addr, mb.haproxy.ConfigPath, mb.haproxy.AdminSock, mb.haproxy.MasterSock, mb.haproxy.StateFile,
		testbed.HAProxyBin(b), testbed.FreePort(b), backends.String()))
	for i := 0; i < n; i++ {
		be := startBackend(b, fmt.Sprintf("stable-%d", i))
		svc := fmt.Sprintf("svc%d", i)
		mb.consul.Register(&api.AgentServiceRegistration{ID: "stable-" + svc, Name: svc, Address: be.host, Port: be.port}, api.HealthPassing)
	}
	proc := testbed.StartProcess(b, "hapctl", hapctlBin, "daemon", "--config", cfgPath, "--log-level", "warn")
	testbed.Eventually(b, 30*time.Second, "every backend has its stable instance", func() error {
		if proc.Exited() {
			b.Fatalf("hapctl exited:\n%s", proc.Output())
		}
		for i := 0; i < n; i++ {
			servers, err := mb.haproxy.TryServers(fmt.Sprintf("be_svc%d", i))
			if err != nil || len(servers) != 1 || servers[0].State() != runtime.StateReady {
				return fmt.Errorf("be_svc%d: %v %v", i, servers, err)
			}
		}
		return nil
	})
	return mb
}

// pollServing polls until endpoint serves in backend and returns the time
// since start.
func (mb *multiBed) pollServing(backend, endpoint string, start time.Time) time.Duration {
	deadline := start.Add(20 * time.Second)
	for time.Now().Before(deadline) {
		servers, err := mb.haproxy.TryServers(backend)
		if err == nil {
			for _, s := range servers {
				if s.Endpoint() == endpoint && s.State() == runtime.StateReady {
					return time.Since(start)
				}
			}
		}
	}
	mb.t.Fatalf("%s not serving in %s after 20s", endpoint, backend)
	return 0
}
