package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

// TestCoreScenario drives Consul through the core cases and checks HAProxy
// follows through the runtime API only: no reload after the bootstrap, and
// no failed request under load while the backend churns.
func TestCoreScenario(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 4, serverOptions: "check inter 1s", growth: "reload"})
	backends := map[string]*backend{}
	for _, name := range []string{"web-1", "web-2", "web-3", "web-4", "web-5"} {
		backends[name] = startBackend(t, name)
	}

	// Bootstrap: hapctl adds 4 slot lines to the user's file and reloads once.
	b.startHapctl()
	cfg := fileContent(t, b.haproxy.ConfigPath)
	for i := 1; i <= 4; i++ {
		if !strings.Contains(cfg, fmt.Sprintf("    server srv%d 127.0.0.1:1 disabled check inter 1s\n", i)) {
			t.Fatalf("slot line srv%d missing:\n%s", i, cfg)
		}
	}
	if !strings.Contains(cfg, "    retries 3\n    option redispatch\n    server srv1") {
		t.Fatalf("the user's lines moved:\n%s", cfg)
	}
	reloadsAfterBootstrap := b.haproxy.Procs().Master.Reloads
	if reloadsAfterBootstrap != 1 {
		t.Fatalf("bootstrap: master counts %d reloads, want 1", reloadsAfterBootstrap)
	}

	// Three instances: traffic reaches all three.
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		b.register(id, backends[id], 0)
	}
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		b.waitSlot(backends[id].endpoint(), runtime.StateReady, 1)
	}
	seen := map[string]bool{}
	testbed.Eventually(t, 10*time.Second, "traffic reaches all three", func() error {
		seen[get(t, b.frontend)] = true
		if len(seen) < 3 {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	})

	ld := startLoad(t, b.frontend, 4, 5*time.Millisecond)

	// A failing check takes the instance out: no traffic at all.
	b.consul.SetCheck("web-2", api.HealthCritical)
	b.waitSlot(backends["web-2"].endpoint(), runtime.StateMaint, -1)
	ld.waitMore(t, 50)
	before := backends["web-2"].requests.Load()
	for i := 0; i < 30; i++ {
		get(t, b.frontend)
	}
	if got := backends["web-2"].requests.Load(); got != before {
		t.Fatalf("web-2 in maint got %d requests", got-before)
	}

	// Passing again: back in service, in the same slot.
	slotBefore, _ := b.slotOf(backends["web-2"].endpoint())
	b.consul.SetCheck("web-2", api.HealthPassing)
	b.waitSlot(backends["web-2"].endpoint(), runtime.StateReady, 1)
	if s, _ := b.slotOf(backends["web-2"].endpoint()); s.Name != slotBefore.Name {
		t.Fatalf("web-2 came back in %s, was %s", s.Name, slotBefore.Name)
	}
	testbed.Eventually(t, 10*time.Second, "web-2 serves again", func() error {
		if backends["web-2"].requests.Load() == before {
			return fmt.Errorf("no request yet")
		}
		return nil
	})

	// Deregistered: its slot goes to maint.
	b.consul.Deregister("web-3")
	b.waitSlot(backends["web-3"].endpoint(), runtime.StateMaint, -1)
	ld.waitMore(t, 50)

	// A fourth instance is placed in the lowest free slot, one in maint.
	lowestFree := ""
	for _, s := range b.haproxy.Servers("be_web") {
		if s.State() == runtime.StateMaint {
			lowestFree = s.Name
			break
		}
	}
	b.register("web-4", backends["web-4"], 0)
	b.waitSlot(backends["web-4"].endpoint(), runtime.StateReady, 1)
	ld.waitMore(t, 50)
	if s4, _ := b.slotOf(backends["web-4"].endpoint()); lowestFree == "" || s4.Name != lowestFree {
		t.Fatalf("web-4 is in %q, want the lowest free slot %q", s4.Name, lowestFree)
	}

	// A weight change is applied.
	b.register("web-1", backends["web-1"], 7)
	b.waitSlot(backends["web-1"].endpoint(), runtime.StateReady, 7)
	ld.waitMore(t, 50)

	stable := b.slots()
	// Hostile registrations are skipped and nothing else moves. web-3 comes
	// back in the same burst (into the last free slot): once it is ready,
	// hapctl has synced past every hostile entry.
	cfgBefore := fileContent(t, b.haproxy.ConfigPath)
	invalidBefore := b.metric(`hapctl_invalid_instances_total{backend="be_web"}`)
	for i, addr := range []string{"10.0.0.1;shutdown sessions server be_web/srv1", "10.0.0.2\nset server be_web/srv1 state ready",
		"10.0.0.3 port 1", "web.example.com"} {
		b.consul.Register(&api.AgentServiceRegistration{ID: fmt.Sprintf("evil-%d", i), Name: "web", Address: addr, Port: 80}, api.HealthPassing)
	}
	b.consul.Register(&api.AgentServiceRegistration{ID: "evil-port", Name: "web", Address: "127.0.0.1", Port: 70000}, api.HealthPassing)
	b.consul.Register(&api.AgentServiceRegistration{ID: "evil-dup", Name: "web", Address: backends["web-1"].host, Port: backends["web-1"].port}, api.HealthPassing)
	b.register("web-3", backends["web-3"], 0)
	b.waitSlot(backends["web-3"].endpoint(), runtime.StateReady, 1)
	ld.waitMore(t, 50)
	if n := b.metric(`hapctl_invalid_instances_total{backend="be_web"}`) - invalidBefore; n != 6 {
		t.Fatalf("%v invalid instances counted, want 6", n)
	}
	web3Slot, _ := b.slotOf(backends["web-3"].endpoint())
	var want []string
	for _, line := range stable {
		if strings.HasPrefix(line, web3Slot.Name+"=") {
			line = web3Slot.Name + "=" + backends["web-3"].endpoint() + "/ready/1"
		}
		want = append(want, line)
	}
	stable = b.slots()
	if !slices.Equal(stable, want) {
		t.Fatalf("after the hostile burst:\n got  %v\n want %v", stable, want)
	}
	// hapctl may rewrite its own slot lines; the user's lines
	// stay as they are, and nothing hostile reaches the file.
	cfgAfter := fileContent(t, b.haproxy.ConfigPath)
	if userLines(cfgAfter) != userLines(cfgBefore) {
		t.Fatalf("the user's lines of haproxy.cfg changed:\n%s\n--- before ---\n%s", cfgAfter, cfgBefore)
	}
	if strings.Contains(cfgAfter, "70000") || strings.Contains(cfgAfter, "evil") {
		t.Fatalf("a hostile value reached haproxy.cfg:\n%s", cfgAfter)
	}

	// Restart hapctl with nothing changed in Consul: nothing changes in HAProxy.
	b.stopHapctl()
	if after := b.slots(); !slices.Equal(after, stable) {
		t.Fatalf("stopping hapctl changed HAProxy:\n before %v\n after  %v", stable, after)
	}
	ld.waitMore(t, 50) // hapctl is down: HAProxy serves on
	b.startHapctl()
	ld.waitMore(t, 50)
	if after := b.slots(); !slices.Equal(after, stable) {
		t.Fatalf("restart changed HAProxy:\n before %v\n after  %v", stable, after)
	}
	if n := b.metric(`hapctl_runtime_commands_total{result="ok"}`) + b.metric(`hapctl_runtime_commands_total{result="error"}`); n != 0 {
		t.Fatalf("the restarted hapctl sent %v runtime commands", n)
	}

	// Over capacity: a fifth instance with all four slots taken is reported, not placed.
	b.register("web-5", backends["web-5"], 0)
	testbed.Eventually(t, 10*time.Second, "web-5 reported unplaced", func() error {
		if v := b.metric(`hapctl_unplaced_instances{backend="be_web"}`); v != 1 {
			return fmt.Errorf("unplaced = %v", v)
		}
		return nil
	})
	if _, ok := b.slotOf(backends["web-5"].endpoint()); ok {
		t.Fatal("web-5 was placed without a free slot")
	}

	ld.finish()
	if got := b.haproxy.Procs().Master.Reloads; got != reloadsAfterBootstrap {
		t.Fatalf("haproxy reloaded %d times after the bootstrap", got-reloadsAfterBootstrap)
	}
	sent, failed := ld.sent.Load(), ld.failed.Load()
	t.Logf("load: %d requests, %d failed", sent, failed)
	if sent < 400 {
		t.Fatalf("load sent only %d requests", sent)
	}
	if failed != 0 {
		t.Fatalf("%d of %d requests failed: %v", failed, sent, ld.errors)
	}
}

// userLines is a config without hapctl's slot lines.
func userLines(cfg string) string {
	var out []string
	for _, line := range strings.Split(cfg, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "server" {
			if _, ok := slot.Index(f[1]); ok {
				continue
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
