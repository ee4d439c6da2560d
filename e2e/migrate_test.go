package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

// TestTakeOverFromRenderedServers follows the README's move from
// consul-template, under keep-alive and new-connection load: the server
// lines consul-template rendered stay while hapctl adds its slots beside
// them and binds every instance; then the operator deletes the rendered
// lines and reloads HAProxy. No request fails, hapctl never touches the
// user's lines, and HAProxy reloads once: the operator's (hapctl adds its
// slots to the running HAProxy with `add server`).
func TestTakeOverFromRenderedServers(t *testing.T) {
	var backends []*backend
	rendered := ""
	for i := 1; i <= 3; i++ {
		be := startBackend(t, fmt.Sprintf("web-%d", i))
		backends = append(backends, be)
		rendered += fmt.Sprintf("    server %s %s check inter 1s\n", be.name, be.endpoint())
	}
	b := newBed(t, bedOptions{minSlots: 4, userServers: rendered})
	for _, be := range backends {
		b.register(be.name, be, 1)
	}
	before := fileContent(t, b.haproxy.ConfigPath)
	keep := startLoad(t, b.frontend, 2, 10*time.Millisecond)
	fresh := startFreshLoad(t, b.frontend, 2, 10*time.Millisecond)
	keep.waitMore(t, 50)

	// plan says what the first start does, and changes nothing.
	out, code := hapctl(t, "plan", "--config", b.cfgPath)
	if code != 0 || !strings.Contains(out, "srv1") {
		t.Fatalf("plan (exit %d):\n%s", code, out)
	}
	if fileContent(t, b.haproxy.ConfigPath) != before {
		t.Fatal("plan changed haproxy.cfg")
	}

	b.startHapctl()
	want := []string{}
	for i, be := range backends {
		b.waitSlot(be.endpoint(), runtime.StateReady, -1) // a slot's, not the rendered line's
		want = append(want, fmt.Sprintf("%s=%s/ready/1", slot.Name(i+1), be.endpoint()))
	}
	want = append(want, "srv4=127.0.0.1:1/maint/1")
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("slots %v, want %v", got, want)
	}
	if out := b.hapctl.Output(); !strings.Contains(out, "not hapctl's slots (web-1, web-2, web-3)") {
		t.Fatalf("hapctl did not warn of the rendered server lines:\n%s", out)
	}
	if got := userLines(fileContent(t, b.haproxy.ConfigPath)); got != before {
		t.Fatalf("hapctl changed the user's lines:\n%s\nwas:\n%s", got, before)
	}
	for _, be := range backends {
		if s := b.server(be.name); s.Endpoint() != be.endpoint() || s.State() != runtime.StateReady {
			t.Fatalf("the rendered server %s is %s %s", be.name, s.Endpoint(), s.State())
		}
	}

	// Once hapctl has written the bound slots into the files (the README
	// says: when `hapctl status` shows them, a second later at most), the
	// operator deletes the rendered lines and reloads HAProxy, while
	// hapctl runs.
	b.waitFilesCarry(backends)
	cfg := fileContent(t, b.haproxy.ConfigPath)
	if !strings.Contains(cfg, rendered) {
		t.Fatalf("the rendered lines are no longer together:\n%s", cfg)
	}
	testbed.WriteFile(t, b.haproxy.ConfigPath, strings.Replace(cfg, rendered, "", 1))
	if _, err := b.haproxy.Master.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, "only the slots are left", func() error {
		var names []string
		for _, s := range b.haproxy.Servers("be_web") {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, " "); got != "srv1 srv2 srv3 srv4" {
			return fmt.Errorf("servers %s", got)
		}
		return nil
	})
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("after the operator's reload: %v, want %v", got, want)
	}
	keep.waitMore(t, 100)
	fresh.waitMore(t, 100)
	keep.noFailures(t)
	fresh.noFailures(t)
	if n := b.haproxy.Procs().Master.Reloads; n != 1 {
		t.Fatalf("haproxy reloaded %d times, want 1: the operator's (hapctl adds its slots with add server)", n)
	}
}

// server returns be_web's server name.
func (b *bed) server(name string) runtime.ServerState {
	b.t.Helper()
	for _, s := range b.haproxy.Servers("be_web") {
		if s.Name == name {
			return s
		}
	}
	b.t.Fatalf("no server %s in be_web", name)
	return runtime.ServerState{}
}
