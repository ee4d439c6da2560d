package haproxycfg_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

// reloaderBed is a HAProxy with be_web holding slots srv1..srvN and a
// Reloader for it.
type reloaderBed struct {
	h        *testbed.HAProxy
	r        *haproxycfg.Reloader
	mu       gosync.Mutex
	reasons  []string
	failures []string
}

func newReloaderBed(t *testing.T, slots int, options string) *reloaderBed {
	t.Helper()
	h := testbed.NewHAProxy(t)
	cfg := userConfig(h, testbed.FreePort(t))
	for i := 1; i <= slots; i++ {
		cfg += haproxycfg.SlotLine("    ", i, "") + "\n"
	}
	cfg += "    server backup1 127.0.0.1:2 backup\n"
	h.Start(cfg)
	b := &reloaderBed{h: h}
	b.r = &haproxycfg.Reloader{
		ConfigFile: h.ConfigPath, Binary: testbed.HAProxyBin(t), StateFile: h.StateFile,
		Backends: []haproxycfg.SlotSpec{{Backend: "be_web", Options: options}},
		Runtime:  h.Runtime, Master: h.Master, Log: zerolog.Nop(),
		OnReload: func(reason string) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.reasons = append(b.reasons, reason)
		},
		OnFailure: func(stage string) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.failures = append(b.failures, stage)
		},
	}
	return b
}

func (b *reloaderBed) exec(t *testing.T, cmds ...runtime.Command) {
	t.Helper()
	res, err := b.h.Runtime.Exec(context.Background(), cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

// slots returns "srvN=addr:port/state/weight" of every slot server.
func (b *reloaderBed) slots() string {
	var parts []string
	for _, s := range b.h.Servers("be_web") {
		if _, ok := slot.Index(s.Name); ok {
			parts = append(parts, fmt.Sprintf("%s=%s/%s/%d", s.Name, s.Endpoint(), s.State(), s.Weight))
		}
	}
	return strings.Join(parts, " ")
}

func mustCmd(t *testing.T) func(runtime.Command, error) runtime.Command {
	return func(c runtime.Command, err error) runtime.Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestReloaderKeepsRuntimeState grows and shrinks a backend by reload and
// checks that every address, weight, drain and maint set at runtime comes
// through, and that the user's lines stay.
func TestReloaderKeepsRuntimeState(t *testing.T) {
	b := newReloaderBed(t, 4, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := mustCmd(t)
	a1, a2, a3 := netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12"), netip.MustParseAddr("::1")
	b.exec(t,
		must(runtime.SetAddr("be_web", "srv1", a1, 8081)), must(runtime.SetWeight("be_web", "srv1", 5)),
		must(runtime.SetState("be_web", "srv1", runtime.StateReady)),
		must(runtime.SetAddr("be_web", "srv2", a2, 8082)), must(runtime.SetState("be_web", "srv2", runtime.StateDrain)),
		must(runtime.SetAddr("be_web", "srv3", a3, 8083)), must(runtime.SetWeight("be_web", "srv3", 0)),
	)
	before := b.slots()
	pid := b.h.Procs().Master.Reloads

	out, err := b.r.Attempt(ctx, map[string]int{"be_web": 8})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Reloaded || out.Reason != haproxycfg.ReasonGrow || len(out.Mismatches) != 0 {
		t.Fatalf("grow: %+v", out)
	}
	if got := b.h.Procs().Master.Reloads; got != pid+1 {
		t.Fatalf("master counts %d reloads, want %d", got, pid+1)
	}
	free := "127.0.0.1:1/maint/1"
	want := before + " srv5=" + free + " srv6=" + free + " srv7=" + free + " srv8=" + free
	if got := b.slots(); got != want {
		t.Fatalf("after growing by reload:\n got  %s\n want %s", got, want)
	}
	data, err := os.ReadFile(b.h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"# the user's own frontend", "    # hapctl adds its slot lines below", "    server backup1 127.0.0.1:2 backup",
		"    server srv1 127.0.0.11:8081 weight 5", "    server srv3 [::1]:8083 disabled weight 0", "    server srv8 127.0.0.1:1 disabled weight 1"} {
		if !strings.Contains(string(data), l+"\n") {
			t.Errorf("config lacks line %q:\n%s", l, data)
		}
	}
	if good, err := os.ReadFile(b.h.ConfigPath + ".last-good"); err != nil || !bytes.Equal(good, data) {
		t.Errorf("last-good copy differs from the reloaded config (%v)", err)
	}

	// Nothing asked: the file is in line, nothing happens.
	out, err = b.r.Attempt(ctx, nil)
	if err != nil || out.Written || out.Reloaded {
		t.Fatalf("idle attempt: %+v %v", out, err)
	}
	// A runtime change is persisted without a reload.
	b.exec(t, must(runtime.SetWeight("be_web", "srv1", 9)))
	out, err = b.r.Attempt(ctx, nil)
	if err != nil || !out.Written || out.Reloaded {
		t.Fatalf("persist: %+v %v", out, err)
	}
	if data, _ := os.ReadFile(b.h.ConfigPath); !strings.Contains(string(data), "server srv1 127.0.0.11:8081 weight 9\n") {
		t.Fatalf("persist did not write the new weight:\n%s", data)
	}

	// Shrink: only trailing free slots go.
	b.exec(t, must(runtime.SetAddr("be_web", "srv6", a1, 8086)), must(runtime.SetState("be_web", "srv6", runtime.StateReady)))
	out, err = b.r.Attempt(ctx, map[string]int{"be_web": 4})
	if err != nil || !out.Reloaded || out.Reason != haproxycfg.ReasonShrink || len(out.Mismatches) != 0 {
		t.Fatalf("shrink: %+v %v", out, err)
	}
	got := b.slots()
	if !strings.HasSuffix(got, " srv5="+free+" srv6=127.0.0.11:8086/ready/1") || strings.Contains(got, "srv7") {
		t.Fatalf("shrink must drop srv7 and srv8 only (srv6 is in service): %s", got)
	}
	if !strings.HasPrefix(got, "srv1=127.0.0.11:8081/ready/9 srv2=127.0.0.12:8082/drain/1 srv3=[::1]:8083/maint/0") {
		t.Fatalf("runtime state lost across the shrink: %s", got)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fmt.Sprint(b.reasons) != "[grow shrink]" || len(b.failures) != 0 {
		t.Fatalf("reasons %v failures %v", b.reasons, b.failures)
	}
}

// TestReloaderCheckFailure: a config haproxy -c refuses is never written
// and never reloaded.
func TestReloaderCheckFailure(t *testing.T) {
	b := newReloaderBed(t, 2, "check inter banana")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := os.ReadFile(b.h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	reloads := b.h.Procs().Master.Reloads
	_, err = b.r.Attempt(ctx, map[string]int{"be_web": 4})
	var se *haproxycfg.StageError
	if !errors.As(err, &se) || se.Stage != haproxycfg.StageCheck || !strings.Contains(err.Error(), "'server be_web/srv1' : unexpected character 'b'") {
		t.Fatalf("err = %v, want a check failure naming the bad option", err)
	}
	if after, _ := os.ReadFile(b.h.ConfigPath); !bytes.Equal(after, before) {
		t.Fatalf("the config changed:\n%s", after)
	}
	if got := b.h.Procs().Master.Reloads; got != reloads {
		t.Fatalf("%d reloads, want %d", got, reloads)
	}
}

// TestReloaderReloadFailure: a reload HAProxy fails (a new bind on a busy
// port passes haproxy -c) restores the file as it was and keeps the old
// worker serving.
func TestReloaderReloadFailure(t *testing.T) {
	b := newReloaderBed(t, 2, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	cfg, err := os.ReadFile(b.h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("\nfrontend busy\n    bind %s\n    default_backend be_web\n", busy.Addr())...)
	testbed.WriteFile(t, b.h.ConfigPath, string(cfg))
	info, err := b.h.Info()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.r.Attempt(ctx, map[string]int{"be_web": 4})
	var se *haproxycfg.StageError
	if !errors.As(err, &se) || se.Stage != haproxycfg.StageReload || !strings.Contains(err.Error(), "restored") {
		t.Fatalf("err = %v, want a reload failure with the file restored", err)
	}
	if after, _ := os.ReadFile(b.h.ConfigPath); !bytes.Equal(after, cfg) {
		t.Fatalf("the config was not restored:\n%s", after)
	}
	if now, err := b.h.Info(); err != nil || now.Pid != info.Pid {
		t.Fatalf("worker after the failed reload: %+v %v, want pid %d", now, err, info.Pid)
	}
	if got := len(b.h.Servers("be_web")); got != 3 {
		t.Fatalf("be_web has %d servers, want 2 slots and the backup", got)
	}
}

// TestReloaderCoalesces: requests that keep changing are gathered into one
// reload; a failing attempt backs off instead of looping.
func TestReloaderCoalesces(t *testing.T) {
	b := newReloaderBed(t, 2, "")
	b.r.MinInterval = time.Second
	b.r.Settle = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	reloads := b.h.Procs().Master.Reloads
	for _, n := range []int{4, 8, 16, 32} {
		b.r.Want("be_web", n)
	}
	testbed.Eventually(t, 30*time.Second, "one reload to 32 slots", func() error {
		if st := b.r.Status(); len(st.Pending) > 0 || st.Err != nil {
			return fmt.Errorf("status %+v", st)
		}
		if n := strings.Count(b.slots(), "srv"); n != 32 {
			return fmt.Errorf("%d slots", n)
		}
		return nil
	})
	if got := b.h.Procs().Master.Reloads; got != reloads+1 {
		t.Fatalf("%d reloads for one burst of requests, want 1", got-reloads)
	}
	// A request right after a reload waits for MinInterval.
	first := b.r.Status().LastReload
	b.r.Want("be_web", 64)
	testbed.Eventually(t, 30*time.Second, "a second reload to 64 slots", func() error {
		if n := strings.Count(b.slots(), "srv"); n != 64 {
			return fmt.Errorf("%d slots", n)
		}
		// The new worker can answer before the reloader records the reload.
		if !b.r.Status().LastReload.After(first) {
			return errors.New("reload not recorded yet")
		}
		return nil
	})
	if gap := b.r.Status().LastReload.Sub(first); gap < b.r.MinInterval {
		t.Fatalf("reloads %s apart, want at least reload_min_interval %s", gap, b.r.MinInterval)
	}
}

func TestReloaderBacksOff(t *testing.T) {
	b := newReloaderBed(t, 2, "check inter banana")
	b.r.MinInterval = 100 * time.Millisecond
	b.r.Settle = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	reloads := b.h.Procs().Master.Reloads
	start := time.Now()
	b.r.Want("be_web", 4)
	testbed.Eventually(t, 30*time.Second, "three failed attempts", func() error {
		if st := b.r.Status(); st.Failures < 3 {
			return fmt.Errorf("%d failures", st.Failures)
		}
		return nil
	})
	st := b.r.Status()
	// Attempts n+1 waits at least half of 500ms·2^(n-1): three attempts
	// take at least 0.25 + 0.5 s, and the next is set further still.
	if elapsed := time.Since(start); elapsed < 750*time.Millisecond {
		t.Fatalf("3 failed attempts within %s: no backoff", elapsed)
	}
	if !st.RetryAt.After(time.Now().Add(400*time.Millisecond)) && st.Failures == 3 {
		t.Fatalf("next retry at %s: backoff did not grow", time.Until(st.RetryAt))
	}
	if st.Err == nil || !strings.Contains(st.Err.Error(), "unexpected character") {
		t.Fatalf("status error %v", st.Err)
	}
	if got := b.h.Procs().Master.Reloads; got != reloads {
		t.Fatalf("%d reloads of a config haproxy -c refuses", got-reloads)
	}
}

// TestReloaderPersistsValuesWithoutCheck: a pass that only writes new values
// into the existing slot lines (address, weight, maint) needs no
// `haproxy -c` (here the binary does not exist) and writes the server-state
// file too, so that a reload by hand brings back the drain; a pass that adds
// slot lines still checks.
func TestReloaderPersistsValuesWithoutCheck(t *testing.T) {
	b := newReloaderBed(t, 2, "")
	b.r.Binary = "/nonexistent/haproxy"
	must := mustCmd(t)
	b.exec(t, must(runtime.SetAddr("be_web", "srv1", netip.MustParseAddr("127.0.0.5"), 8081)),
		must(runtime.SetState("be_web", "srv1", runtime.StateReady)),
		must(runtime.SetAddr("be_web", "srv2", netip.MustParseAddr("127.0.0.6"), 8082)),
		must(runtime.SetState("be_web", "srv2", runtime.StateDrain)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := b.r.Attempt(ctx, nil)
	if err != nil || !out.Written || out.Relaid || out.Reloaded {
		t.Fatalf("value pass: %+v, %v", out, err)
	}
	cfg, _ := os.ReadFile(b.h.ConfigPath)
	if !strings.Contains(string(cfg), "server srv1 127.0.0.5:8081") || strings.Contains(string(cfg), "server srv1 127.0.0.5:8081 disabled") {
		t.Fatalf("srv1's line does not follow the runtime state:\n%s", cfg)
	}
	state, err := os.ReadFile(b.h.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := runtime.ParseServersState(string(state))
	if err != nil {
		t.Fatal(err)
	}
	drained := false
	for _, r := range rows {
		drained = drained || (r.Name == "srv2" && r.State() == runtime.StateDrain)
	}
	if !drained {
		t.Fatalf("the state file lacks srv2's drain:\n%s", state)
	}
	if _, err := b.r.Attempt(ctx, map[string]int{"be_web": 4}); err == nil {
		t.Fatal("a pass that adds slot lines ran without haproxy -c")
	}
}
