package e2e

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// hapctl runs the hapctl binary and returns its combined output and exit code.
func hapctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return hapctlEnv(t, nil, args...)
}

// hapctlEnv runs hapctl with extra environment variables.
func hapctlEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(hapctlBin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

func TestDaemonRefusesBadConfig(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 4})
	before := fileContent(t, b.haproxy.ConfigPath)
	cfg := fileContent(t, b.cfgPath)
	testbed.WriteFile(t, b.cfgPath, strings.Replace(cfg, "min_slots: 4", "min_slots: 0\n    max_slot: 3", 1))
	out, code := hapctl(t, "daemon", "--config", b.cfgPath)
	if code != 1 || !strings.Contains(out, `unknown key "max_slot" in a backend`) {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	testbed.WriteFile(t, b.cfgPath, strings.Replace(cfg, "min_slots: 4", "min_slots: 0", 1))
	out, code = hapctl(t, "daemon", "--config", b.cfgPath)
	if code != 1 || !strings.Contains(out, "backends[0] (be_web).min_slots: must be at least 1, got 0") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	testbed.WriteFile(t, b.cfgPath, strings.Replace(cfg, `server_options: ""`, `server_options: "check inter never"`, 1))
	out, code = hapctl(t, "daemon", "--config", b.cfgPath)
	if code != 1 || !strings.Contains(out, "haproxy -c refused") {
		t.Fatalf("server options HAProxy refuses: exit %d, output:\n%s", code, out)
	}
	// The admin API's port is taken: hapctl stops before touching HAProxy.
	testbed.WriteFile(t, b.cfgPath, cfg)
	busy, err := net.Listen("tcp", b.apiAddr)
	if err != nil {
		t.Fatal(err)
	}
	out, code = hapctl(t, "daemon", "--config", b.cfgPath)
	_ = busy.Close()
	if code != 1 || !strings.Contains(out, "api.listen "+b.apiAddr) {
		t.Fatalf("busy api port: exit %d, output:\n%s", code, out)
	}
	if after := fileContent(t, b.haproxy.ConfigPath); after != before {
		t.Fatalf("a refused start changed haproxy.cfg:\n%s", after)
	}
	if n := b.haproxy.Procs().Master.Reloads; n != 0 {
		t.Fatalf("a refused config reloaded haproxy %d times", n)
	}
}

func TestPlanChangesNothing(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 4})
	be := startBackend(t, "web-1")
	b.register("web-1", be, 3)
	before := fileContent(t, b.haproxy.ConfigPath)
	testbed.Eventually(t, 10*time.Second, "consul lists web-1", func() error {
		out, code := hapctl(t, "plan", "--config", b.cfgPath)
		if code != 0 || !strings.Contains(out, "1 passing") {
			return errors.New(out)
		}
		return nil
	})
	out, code := hapctl(t, "plan", "--config", b.cfgPath)
	for _, want := range []string{
		"be_web: adds srv1, srv2, srv3, srv4",
		"reload: no\n",
		"grows from 0 to 4 slots with add server (no reload)",
		"add server be_web/srv1 " + be.endpoint() + " weight 3",
		"set server be_web/srv1 state ready",
		"add server be_web/srv4 127.0.0.1:1 weight 1",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("plan output lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	if after := fileContent(t, b.haproxy.ConfigPath); after != before {
		t.Fatal("plan changed haproxy.cfg")
	}
	if n := b.haproxy.Procs().Master.Reloads; n != 0 {
		t.Fatalf("plan reloaded haproxy")
	}
	if len(b.haproxy.Servers("be_web")) != 0 {
		t.Fatal("plan added servers")
	}
}

func TestStartsBeforeHAProxyAndFollowsRestarts(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 2})
	be := startBackend(t, "web-1")
	b.register("web-1", be, 0)
	b.register("web-2", startBackend(t, "web-2"), 0)
	b.haproxy.Stop()

	// HAProxy is down: hapctl writes the slots into the file and waits.
	b.hapctl = testbed.StartProcess(t, "hapctl", hapctlBin, "daemon", "--config", b.cfgPath)
	testbed.Eventually(t, 10*time.Second, "readyz names haproxy", func() error {
		err := b.ready()
		if err == nil || !strings.Contains(err.Error(), "haproxy does not answer") {
			return errors.New("readyz: " + errString(err))
		}
		return nil
	})
	if !strings.Contains(fileContent(t, b.haproxy.ConfigPath), "server srv2 127.0.0.1:1 disabled") {
		t.Fatal("slot lines not written while haproxy was down")
	}

	// HAProxy starts with the slot lines: hapctl syncs it without a reload.
	b.haproxy.Start("")
	b.waitSlot(be.endpoint(), runtime.StateReady, 1)
	testbed.Eventually(t, 10*time.Second, "hapctl ready", b.ready)
	want := b.slots()

	// HAProxy restarted (not reloaded): a new process with every slot in maint.
	b.haproxy.Stop()
	b.haproxy.Start("")
	testbed.Eventually(t, 10*time.Second, "slots restored after the restart", func() error {
		if got := b.slots(); !slices.Equal(got, want) {
			return errors.New(strings.Join(got, " "))
		}
		return nil
	})
	if n := b.haproxy.Procs().Master.Reloads; n != 0 {
		t.Fatalf("hapctl reloaded the restarted haproxy %d times", n)
	}
}

func errString(err error) string {
	if err == nil {
		return "ready"
	}
	return err.Error()
}

// TestMinSlotsGrowthUnderLoad: raising min_slots on a live system adds
// the slots with `add server` (dynamic) or reloads HAProxy once (reload);
// the bound slots keep serving through it, no request fails.
func TestMinSlotsGrowthUnderLoad(t *testing.T) {
	for _, mode := range []string{"dynamic", "reload"} {
		t.Run(mode, func(t *testing.T) { testMinSlotsGrowth(t, mode) })
	}
}

func testMinSlotsGrowth(t *testing.T, mode string) {
	b := newBed(t, bedOptions{minSlots: 2, serverOptions: "check inter 1s", growth: mode})
	web1, web2 := startBackend(t, "web-1"), startBackend(t, "web-2")
	b.register("web-1", web1, 5)
	b.register("web-2", web2, 0)
	b.startHapctl()
	b.waitSlot(web1.endpoint(), runtime.StateReady, 5)
	b.waitSlot(web2.endpoint(), runtime.StateReady, 1)
	before := b.slots()
	reloads := b.haproxy.Procs().Master.Reloads

	ld := startLoad(t, b.frontend, 4, 2*time.Millisecond)
	ld.waitMore(t, 50)
	b.stopHapctl()
	testbed.WriteFile(t, b.cfgPath, strings.Replace(fileContent(t, b.cfgPath), "min_slots: 2", "min_slots: 6", 1))
	b.startHapctl()
	testbed.Eventually(t, 10*time.Second, "6 slots", func() error {
		if n := len(b.slots()); n != 6 {
			return fmt.Errorf("%d slots", n)
		}
		return nil
	})
	ld.waitMore(t, 200)
	ld.finish()

	want := 0
	if mode == "reload" {
		want = 1
	}
	if got := b.haproxy.Procs().Master.Reloads; got != reloads+want {
		t.Fatalf("%d reloads for one min_slots change, want %d", got-reloads, want)
	}
	after := b.slots()
	if len(after) != 6 || !slices.Equal(after[:2], before) {
		t.Fatalf("slots after growth:\n %v\nbefore:\n %v", after, before)
	}
	if mode == "reload" {
		if n := b.metric(`hapctl_runtime_commands_total{result="ok"}`); n != 0 {
			t.Fatalf("after the reload hapctl had to resend %v commands: state was lost", n)
		}
	}
	if n := len(haproxycfg.SlotsInFile([]byte(fileContent(t, b.haproxy.ConfigPath)), "be_web")); n != 6 {
		t.Fatalf("%d slot lines in haproxy.cfg, want 6", n)
	}
	if f := ld.failed.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed across the growth: %v", f, ld.sent.Load(), ld.errors)
	}
	t.Logf("load: %d requests across the growth, 0 failed", ld.sent.Load())
}
