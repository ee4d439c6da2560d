package haproxycfg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
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

func TestBootstrapAgainstHAProxy(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	b := &haproxycfg.Bootstrap{ConfigFile: h.ConfigPath, Binary: testbed.HAProxyBin(t), Runtime: h.Runtime, Master: h.Master, Log: zerolog.Nop()}
	specs := []haproxycfg.SlotSpec{{Backend: "be_web", Slots: 4, Options: "check inter 2s"}, {Backend: "be_new", Slots: 2}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := b.Plan(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Changed || !p.Running || !p.NeedsReload() || len(p.Changes) != 2 {
		t.Fatalf("plan = %+v", p)
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
	if p.Changed || p.NeedsReload() || len(p.Stale) != 0 {
		t.Fatalf("second plan = %+v", p)
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
	if p.Changed || len(p.Stale) != 1 || p.Stale[0] != "be_web" || !p.NeedsReload() {
		t.Fatalf("stale plan = %+v", p)
	}
	if reloaded, err := b.Apply(ctx, p); err != nil || !reloaded {
		t.Fatalf("stale apply reloaded=%v err=%v", reloaded, err)
	}
	if n := len(h.Servers("be_web")); n != 5 {
		t.Fatalf("%d servers after the stale reload", n)
	}
}

func TestBadServerOptionsLeaveTheFileAlone(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(userConfig(h, testbed.FreePort(t)))
	if err := os.Chmod(h.ConfigPath, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(h.ConfigPath)
	b := &haproxycfg.Bootstrap{ConfigFile: h.ConfigPath, Binary: testbed.HAProxyBin(t), Runtime: h.Runtime, Master: h.Master, Log: zerolog.Nop()}
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
	b := &haproxycfg.Bootstrap{ConfigFile: h.ConfigPath, Binary: testbed.HAProxyBin(t), Runtime: h.Runtime, Master: h.Master, Log: zerolog.Nop()}
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
