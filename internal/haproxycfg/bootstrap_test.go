package haproxycfg_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

func userConfig(h *testbed.HAProxy, port int) string {
	return h.Preamble() + fmt.Sprintf(`
# the user's own frontend
frontend fe
    bind 127.0.0.1:%d
    default_backend be_web

backend be_web
    balance roundrobin
    # hapctl adds its slot lines below
`, port)
}

func newBootstrap(t *testing.T, h *testbed.HAProxy) *haproxycfg.Bootstrap {
	return &haproxycfg.Bootstrap{ConfigFile: h.ConfigPath, Binary: testbed.HAProxyBin(t), StateFile: h.StateFile,
		Runtime: h.Runtime, Master: h.Master, Log: zerolog.Nop()}
}

func TestBootstrapAgainstHAProxy(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	b := newBootstrap(t, h)
	specs := []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 4, Options: "check inter 2s"}, {Backend: "be_new", Slots: 2}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Changed || !p.Running || !p.NeedsReload() || len(p.Changes) != 2 {
		t.Fatalf("plan: changed %v running %v reload %v changes %v", p.Changed, p.Running, p.NeedsReload(), p.Changes)
	}
	reloads := h.Procs().Master.Reloads
	reloaded, err := b.Apply(ctx, p)
	if err != nil || !reloaded {
		t.Fatalf("apply: reloaded %v, %v", reloaded, err)
	}
	if got := h.Procs().Master.Reloads; got != reloads+1 {
		t.Fatalf("master counts %d reloads, want %d", got, reloads+1)
	}
	for _, spec := range specs {
		servers := h.Servers(spec.Backend)
		if len(servers) != spec.Slots {
			t.Fatalf("%s has %d servers after reload: %+v", spec.Backend, len(servers), servers)
		}
		for i, s := range servers {
			if s.Name != slot.Name(i+1) || s.State() != runtime.StateMaint {
				t.Fatalf("%s: server %d is %s in state %s", spec.Backend, i, s.Name, s.State())
			}
		}
	}

	// Second start: nothing to write, nothing to reload.
	p, err = b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if p.Changed || p.NeedsReload() || len(p.Stale) != 0 || len(p.Warnings) != 0 {
		t.Fatalf("second plan: changed %v reload %v stale %v warnings %v", p.Changed, p.NeedsReload(), p.Stale, p.Warnings)
	}
	if reloaded, err := b.Apply(ctx, p); err != nil || reloaded {
		t.Fatalf("second apply reloaded=%v err=%v", reloaded, err)
	}
	if got := h.Procs().Master.Reloads; got != reloads+1 {
		t.Fatalf("a no-op bootstrap reloaded: %d reloads", got)
	}

	// The file gains slots by hand but HAProxy was not reloaded: stale.
	cfg, _ := os.ReadFile(h.ConfigPath)
	specs[0].Slots = 5
	more, _, _ := haproxycfg.EnsureSlots(cfg, specs)
	testbed.WriteFile(t, h.ConfigPath, string(more))
	p, err = b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stale) != 1 || p.Stale[0] != "be_web" || !p.NeedsReload() {
		t.Fatalf("stale plan: stale %v, reload %v", p.Stale, p.NeedsReload())
	}
	if reloaded, err := b.Apply(ctx, p); err != nil || !reloaded {
		t.Fatalf("stale apply reloaded=%v err=%v", reloaded, err)
	}
	if n := len(h.Servers("be_web")); n != 5 {
		t.Fatalf("%d servers after the stale reload", n)
	}
}

// TestBootstrapDynamicNeedsNoReload: a dynamic backend HAProxy runs gets
// its slot lines in the file without a reload (the sync loop adds the
// servers), and servers added at runtime are written into the file.
func TestBootstrapDynamicNeedsNoReload(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	b := newBootstrap(t, h)
	b.Dynamic = map[string]bool{"be_web": true, "be_new": true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := h.Runtime.Exec(ctx,
		mustCmd(t)(runtime.AddServer("be_web", "srv3", netip.MustParseAddrPort("127.0.0.5:8080"), 4, "")),
		mustCmd(t)(runtime.SetState("be_web", "srv3", runtime.StateReady)))
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("add server: %v %+v", err, res)
	}
	specs := []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 2}, {Backend: "be_new", Slots: 2}}
	p, err := b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	// be_new does not exist in HAProxy: only a reload can create it.
	if fmt.Sprint(p.Stale) != "[be_new]" || !p.NeedsReload() {
		t.Fatalf("stale %v reload %v", p.Stale, p.NeedsReload())
	}
	specs = specs[:1]
	p, err = b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Changed || p.NeedsReload() {
		t.Fatalf("changed %v reload %v, want a write without reload", p.Changed, p.NeedsReload())
	}
	reloads := h.Procs().Master.Reloads
	if reloaded, err := b.Apply(ctx, p); err != nil || reloaded {
		t.Fatalf("apply: reloaded %v, %v", reloaded, err)
	}
	if got := h.Procs().Master.Reloads; got != reloads {
		t.Fatalf("%d reloads", got-reloads)
	}
	data, _ := os.ReadFile(h.ConfigPath)
	if got := haproxycfg.SlotsInFile(data, "be_web"); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("slots in file %v, want srv1..srv3", got)
	}
	if !strings.Contains(string(data), "server srv3 127.0.0.5:8080 weight 4\n") {
		t.Fatalf("the runtime server is not in the file:\n%s", data)
	}
}

func TestBadServerOptionsLeaveTheFileAlone(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	if err := os.Chmod(h.ConfigPath, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(h.ConfigPath)
	b := newBootstrap(t, h)
	reloads := h.Procs().Master.Reloads
	ctx := context.Background()
	p, err := b.Plan(ctx, []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 2, Options: "check inter never"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Apply(ctx, p)
	var ce *haproxycfg.CheckError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "inter") {
		t.Fatalf("err = %v, want HAProxy's refusal naming the option", err)
	}
	after, _ := os.ReadFile(h.ConfigPath)
	if string(after) != string(before) {
		t.Fatal("the config file changed although haproxy -c refused the new one")
	}
	if fi, _ := os.Stat(h.ConfigPath); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", fi.Mode())
	}
	if got := h.Procs().Master.Reloads; got != reloads {
		t.Fatal("reloaded after a refused config")
	}
	entries, _ := os.ReadDir(h.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

func TestWriteCheckedKeepsMode(t *testing.T) {
	h := testbed.NewHAProxy(t)
	path := h.ConfigPath
	testbed.WriteFile(t, path, userConfig(h, testbed.FreePort(t)))
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	out, _, err := haproxycfg.EnsureSlots(data, []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := haproxycfg.WriteChecked(context.Background(), testbed.HAProxyBin(t), path, out); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(out) {
		t.Fatal("content not written")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v", fi.Mode())
	}
}

func TestBootstrapWithoutHAProxyRunning(t *testing.T) {
	h := testbed.NewHAProxy(t) // paths only: nothing runs
	testbed.WriteFile(t, h.ConfigPath, userConfig(h, testbed.FreePort(t)))
	b := newBootstrap(t, h)
	p, err := b.Plan(context.Background(), []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Running || p.NeedsReload() || !p.Changed {
		t.Fatalf("plan = %+v", p)
	}
	if reloaded, err := b.Apply(context.Background(), p); err != nil || reloaded {
		t.Fatalf("reloaded=%v err=%v", reloaded, err)
	}
	if got := haproxycfg.SlotsInFile(mustRead(t, h.ConfigPath), "be_web"); len(got) != 2 {
		t.Fatalf("slots in file: %v", got)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBootstrapReloadKeepsRuntimeState: growing min_slots reloads HAProxy;
// slots bound at runtime keep their address, weight and drain, because the
// lines are rendered from runtime state and the state file is dumped first.
func TestBootstrapReloadKeepsRuntimeState(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	b := newBootstrap(t, h)
	ctx := context.Background()
	specs := []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 3, Options: "check inter 2s"}}
	p, err := b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	must := func(c runtime.Command, err error) runtime.Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a1, a2 := netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("::1")
	if _, err := h.Runtime.Run(ctx,
		must(runtime.SetAddr("be_web", "srv1", a1, 8081)), must(runtime.SetWeight("be_web", "srv1", 9)), must(runtime.SetState("be_web", "srv1", runtime.StateReady)),
		must(runtime.SetAddr("be_web", "srv2", a2, 8082)), must(runtime.SetState("be_web", "srv2", runtime.StateDrain)),
		must(runtime.SetAddr("be_web", "srv3", a1, 8083)), // maint, address kept for when it comes back
	); err != nil {
		t.Fatal(err)
	}
	want := []string{"srv1 127.0.0.11:8081 ready 9", "srv2 [::1]:8082 drain 1", "srv3 127.0.0.11:8083 maint 1"}
	specs[0].Slots = 5
	p, err = b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if reloaded, err := b.Apply(ctx, p); err != nil || !reloaded {
		t.Fatalf("reloaded %v, err %v", reloaded, err)
	}
	var got []string
	for _, s := range h.Servers("be_web") {
		got = append(got, fmt.Sprintf("%s %s %s %d", s.Name, s.Endpoint(), s.State(), s.Weight))
	}
	want = append(want, "srv4 127.0.0.1:1 maint 1", "srv5 127.0.0.1:1 maint 1")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the reload:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cfg := string(mustRead(t, h.ConfigPath))
	for _, line := range []string{
		"    server srv1 127.0.0.11:8081 weight 9 check inter 2s\n",
		"    server srv2 [::1]:8082 weight 1 check inter 2s\n",
		"    server srv3 127.0.0.11:8083 disabled weight 1 check inter 2s\n",
		"    server srv5 127.0.0.1:1 disabled check inter 2s\n",
	} {
		if !strings.Contains(cfg, line) {
			t.Errorf("config lacks %q:\n%s", line, cfg)
		}
	}
}

func TestWriteCheckedFollowsSymlink(t *testing.T) {
	h := testbed.NewHAProxy(t)
	real := filepath.Join(h.Dir, "real.cfg")
	testbed.WriteFile(t, real, userConfig(h, testbed.FreePort(t)))
	if err := os.Symlink(real, h.ConfigPath); err != nil {
		t.Fatal(err)
	}
	out, _, err := haproxycfg.EnsureSlots(mustRead(t, h.ConfigPath), []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := haproxycfg.WriteChecked(context.Background(), testbed.HAProxyBin(t), h.ConfigPath, out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(h.ConfigPath); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced by a file: %v %v", fi.Mode(), err)
	}
	if string(mustRead(t, real)) != string(out) {
		t.Fatal("the symlink's target was not updated")
	}
}

// TestServerOptionsChangeReloadsOnce: new server_options reach every slot
// line with one checked reload, and the slots keep serving as they were.
func TestServerOptionsChangeReloadsOnce(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	b := newBootstrap(t, h)
	ctx := context.Background()
	specs := []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 2, Options: "check inter 2s"}}
	p, err := b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	set, err := runtime.SetAddr("be_web", "srv1", netip.MustParseAddr("127.0.0.12"), 8080)
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := runtime.SetState("be_web", "srv1", runtime.StateReady)
	if _, err := h.Runtime.Run(ctx, set, ready); err != nil {
		t.Fatal(err)
	}
	reloads := h.Procs().Master.Reloads
	specs[0].Options = "check inter 3s fall 2"
	p, err = b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || len(p.Changes[0].Updated) != 2 || !p.NeedsReload() {
		t.Fatalf("changes %v, reload %v", p.Changes, p.NeedsReload())
	}
	if _, err := b.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := h.Procs().Master.Reloads; got != reloads+1 {
		t.Fatalf("%d reloads, want 1", got-reloads)
	}
	cfg := string(mustRead(t, h.ConfigPath))
	if !strings.Contains(cfg, "    server srv1 127.0.0.12:8080 weight 1 check inter 3s fall 2\n") ||
		!strings.Contains(cfg, "    server srv2 127.0.0.1:1 disabled weight 1 check inter 3s fall 2\n") {
		t.Fatalf("config:\n%s", cfg)
	}
	if s := h.Servers("be_web")[0]; s.Endpoint() != "127.0.0.12:8080" || s.State() != runtime.StateReady {
		t.Fatalf("srv1 after the reload: %s %s", s.Endpoint(), s.State())
	}
	// Nothing left to change: the next start does nothing.
	if p, err = b.Plan(ctx, specs); err != nil || p.Changed || p.NeedsReload() {
		t.Fatalf("plan after: changed %v reload %v err %v", p.Changed, p.NeedsReload(), err)
	}
}
