package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// TestGrowAndShrinkUnderLoad grows be_web from 3 to 40 instances in three
// bursts and back down to 3, under keep-alive load, in both growth modes:
// reload mode reloads at most 3 times for 8 → 64 slots (and once to
// shrink), dynamic mode never; no request fails in either, and a slot in
// maint gets no request across the reloads.
func TestGrowAndShrinkUnderLoad(t *testing.T) {
	for _, mode := range []string{"reload", "dynamic"} {
		t.Run(mode, func(t *testing.T) { testGrowAndShrink(t, mode) })
	}
}

func testGrowAndShrink(t *testing.T, mode string) {
	b := newBed(t, bedOptions{minSlots: 8, serverOptions: "check inter 1s", growth: mode, shrinkAfter: "2s", reloadMin: "500ms"})
	const total = 40
	backends := make([]*backend, total+1)
	for i := 1; i <= total; i++ {
		backends[i] = startBackend(t, fmt.Sprintf("web-%d", i))
	}
	id := func(i int) string { return fmt.Sprintf("web-%d", i) }
	register := func(from, to int) {
		for i := from; i <= to; i++ {
			b.register(id(i), backends[i], 0)
		}
	}
	waitReady := func(from, to int) {
		t.Helper()
		testbed.Eventually(t, 30*time.Second, fmt.Sprintf("instances %d..%d ready", from, to), func() error {
			for i := from; i <= to; i++ {
				if s, ok := b.slotOf(backends[i].endpoint()); !ok || s.State() != runtime.StateReady {
					return fmt.Errorf("%s not ready", id(i))
				}
			}
			return nil
		})
	}

	register(1, 3)
	b.startHapctl()
	waitReady(1, 3)
	start := b.haproxy.Procs().Master.Reloads
	ld := startLoad(t, b.frontend, 4, 2*time.Millisecond)
	ld.waitMore(t, 50)

	// Burst 1 fits in the 8 slots; bursts 2 and 3 need 16, 32 then 64.
	register(4, 8)
	waitReady(1, 8)
	ld.waitMore(t, 100)
	register(9, 25)
	waitReady(9, 25)
	ld.waitMore(t, 100)
	register(26, total)
	waitReady(26, total)
	ld.waitMore(t, 200)
	if n := len(b.slots()); n != 64 {
		t.Fatalf("%d slots for %d instances, want 64", n, total)
	}
	grown := b.haproxy.Procs().Master.Reloads - start

	// web-2 fails its check: its slot goes to maint, keeps web-2's address
	// (no new instance comes to take it) and must get no request from here
	// on, across the shrink (a reload in reload mode).
	b.consul.SetCheck(id(2), api.HealthCritical)
	b.waitSlot(backends[2].endpoint(), runtime.StateMaint, -1)
	ld.waitMore(t, 100)
	maintRequests := backends[2].requests.Load()

	// Back down to 3 (web-2 stays registered but critical): after
	// shrink_after the trailing free slots go, down to min_slots.
	for i := 4; i <= total; i++ {
		b.consul.Deregister(id(i))
	}
	testbed.Eventually(t, 30*time.Second, "shrunk to 8 slots", func() error {
		if n := len(b.slots()); n != 8 {
			return fmt.Errorf("%d slots", n)
		}
		return nil
	})
	waitReady(1, 1)
	waitReady(3, 3)
	if s, ok := b.slotOf(backends[2].endpoint()); !ok || s.State() != runtime.StateMaint {
		t.Fatalf("web-2's slot after the shrink: %+v (found %v), want maint at its address", s, ok)
	}
	ld.waitMore(t, 100)
	ld.finish()
	reloads := b.haproxy.Procs().Master.Reloads - start

	switch mode {
	case "reload":
		if grown < 1 || grown > 3 {
			t.Errorf("%d reloads to grow from 8 to 64 slots, want 1 to 3", grown)
		}
		if reloads != grown+1 {
			t.Errorf("%d reloads in all, want %d: %d to grow and 1 to shrink", reloads, grown+1, grown)
		}
		if got := b.metric(`hapctl_reloads_total{reason="grow"}`); got != float64(grown) {
			t.Errorf("hapctl_reloads_total{reason=\"grow\"} = %v, want %d", got, grown)
		}
	case "dynamic":
		if reloads != 0 || b.haproxy.Procs().Master.Reloads != 0 {
			t.Errorf("dynamic growth reloaded haproxy %d times", b.haproxy.Procs().Master.Reloads)
		}
	}
	if got := backends[2].requests.Load(); got != maintRequests {
		t.Fatalf("web-2's slot in maint got %d requests", got-maintRequests)
	}
	if f := ld.failed.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed: %v", f, ld.sent.Load(), ld.errors)
	}
	// The file follows: 8 slot lines, the user's lines untouched.
	var cfg string
	testbed.Eventually(t, 10*time.Second, "8 slot lines in haproxy.cfg", func() error {
		cfg = fileContent(t, b.haproxy.ConfigPath)
		if n := len(haproxycfg.SlotsInFile([]byte(cfg), "be_web")); n != 8 {
			return fmt.Errorf("%d slot lines", n)
		}
		return nil
	})
	if !strings.Contains(cfg, "    retries 3\n    option redispatch\n    server srv1 ") {
		t.Fatalf("the user's lines moved:\n%s", cfg)
	}
	t.Logf("%s mode: %d reloads to grow 8 → 64 slots, %d in all; %d requests, 0 failed, slowest %v", mode, grown, reloads, ld.sent.Load(),
		time.Duration(ld.slowest.Load()).Round(time.Millisecond))
}

// TestRefusedConfigNeverReloads: server_options that haproxy -c refuses
// stop hapctl at start with HAProxy's message, the file untouched and no
// reload; a config broken while hapctl runs makes growth fail cleanly:
// no reload, the file as it was, /readyz saying why, and it recovers once
// the file is fixed.
func TestRefusedConfigNeverReloads(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 2, serverOptions: "check inter banana", growth: "reload", reloadMin: "200ms"})
	before := fileContent(t, b.haproxy.ConfigPath)
	out, code := hapctl(t, "daemon", "--config", b.cfgPath)
	if code != 1 || !strings.Contains(out, "haproxy -c refused the config") || !strings.Contains(out, "unexpected character 'b'") {
		t.Fatalf("exit %d, want 1 with HAProxy's refusal:\n%s", code, out)
	}
	if after := fileContent(t, b.haproxy.ConfigPath); after != before {
		t.Fatalf("haproxy.cfg changed:\n%s", after)
	}
	if n := b.haproxy.Procs().Master.Reloads; n != 0 {
		t.Fatalf("%d reloads", n)
	}

	// Good options: hapctl runs; then the user's part of the file breaks.
	testbed.WriteFile(t, b.cfgPath, strings.Replace(fileContent(t, b.cfgPath), "check inter banana", "check inter 1s", 1))
	web := []*backend{startBackend(t, "web-1"), startBackend(t, "web-2"), startBackend(t, "web-3")}
	b.register("web-1", web[0], 0)
	b.register("web-2", web[1], 0)
	b.startHapctl()
	b.waitSlot(web[1].endpoint(), runtime.StateReady, 1)
	reloads := b.haproxy.Procs().Master.Reloads
	good := fileContent(t, b.haproxy.ConfigPath)
	broken := strings.Replace(good, "    retries 3\n", "    retries 3\n    no_such_keyword here\n", 1)
	testbed.WriteFile(t, b.haproxy.ConfigPath, broken)

	b.register("web-3", web[2], 0) // needs a third slot: a reload
	testbed.Eventually(t, 15*time.Second, "readyz says why", func() error {
		err := b.ready()
		if err == nil || !strings.Contains(err.Error(), "haproxy -c refused the config") {
			return fmt.Errorf("readyz: %v", err)
		}
		return nil
	})
	if got := fileContent(t, b.haproxy.ConfigPath); got != broken {
		t.Fatalf("the file changed although haproxy -c refused it:\n%s", got)
	}
	if n := b.haproxy.Procs().Master.Reloads; n != reloads {
		t.Fatalf("%d reloads of a refused config", n-reloads)
	}
	if n := b.metric(`hapctl_reload_failures_total{stage="check"}`); n < 1 {
		t.Fatalf("hapctl_reload_failures_total{stage=\"check\"} = %v", n)
	}
	// The instances that fit keep working through the runtime path.
	b.waitSlot(web[0].endpoint(), runtime.StateReady, 1)

	// Fixed by the user: the retry (with backoff) grows the backend.
	testbed.WriteFile(t, b.haproxy.ConfigPath, good)
	b.waitSlot(web[2].endpoint(), runtime.StateReady, 1)
	testbed.Eventually(t, 15*time.Second, "ready again", b.ready)
	if n := b.haproxy.Procs().Master.Reloads; n != reloads+1 {
		t.Fatalf("%d reloads after the fix, want 1", n-reloads)
	}
}
