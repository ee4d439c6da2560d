package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

func startHAProxy(t testing.TB, servers int) *testbed.HAProxy {
	h := testbed.NewHAProxy(t)
	var b strings.Builder
	b.WriteString(h.Preamble())
	fmt.Fprintf(&b, "\nfrontend fe\n    bind 127.0.0.1:%d\n    default_backend be_web\n\nbackend be_web\n    balance roundrobin\n", testbed.FreePort(t))
	for i := 1; i <= servers; i++ {
		fmt.Fprintf(&b, "    server srv%d 127.0.0.1:1 disabled\n", i)
	}
	h.Start(b.String())
	return h
}

// must turns a builder's (Command, error) into a Command, failing t on error.
func must(t testing.TB) func(runtime.Command, error) runtime.Command {
	return func(c runtime.Command, err error) runtime.Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func TestClientAgainstHAProxy(t *testing.T) {
	h := startHAProxy(t, 3)
	ctx := context.Background()
	addr := netip.MustParseAddr("127.0.0.7")
	v6 := netip.MustParseAddr("::1")
	cmds := []runtime.Command{
		must(t)(runtime.SetAddr("be_web", "srv1", addr, 8081)),
		must(t)(runtime.SetWeight("be_web", "srv1", 17)),
		must(t)(runtime.SetState("be_web", "srv1", runtime.StateReady)),
		must(t)(runtime.SetAddr("be_web", "srv2", v6, 8082)),
		must(t)(runtime.SetState("be_web", "srv2", runtime.StateDrain)),
		must(t)(runtime.SetState("be_web", "srv9", runtime.StateReady)),
		must(t)(runtime.SetState("be_other", "srv1", runtime.StateReady)),
		must(t)(runtime.ShowServersState("be_web")),
	}
	res, err := h.Runtime.Exec(ctx, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		var want error
		switch i {
		case 5:
			want = runtime.ErrNoSuchServer
		case 6:
			want = runtime.ErrNoSuchBackend
		}
		if want == nil && r.Err != nil || want != nil && !errors.Is(r.Err, want) {
			t.Errorf("%q: err = %v, want %v", r.Command, r.Err, want)
		}
	}
	got, err := runtime.ParseServersState(res[7].Answer)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		addr   string
		port   int
		weight int
		state  runtime.State
	}
	var rows []row
	for _, s := range got {
		rows = append(rows, row{s.Addr.String(), s.Port, s.Weight, s.State()})
	}
	want := []row{{"127.0.0.7", 8081, 17, runtime.StateReady}, {"::1", 8082, 1, runtime.StateDrain}, {"127.0.0.1", 1, 1, runtime.StateMaint}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("state after batch:\n got  %v\n want %v", rows, want)
	}
}

// TestDynamicServers checks the answers of add/del server, enable health
// and their refusals against HAProxy itself.
func TestDynamicServers(t *testing.T) {
	h := testbed.NewHAProxy(t)
	h.Start(h.Preamble() + `
backend be_rr
    balance roundrobin
    server srv1 127.0.0.1:1 disabled
backend be_static
    balance static-rr
    server srv1 127.0.0.1:1 disabled
`)
	ctx := context.Background()
	ep := netip.MustParseAddrPort("127.0.0.9:8080")
	v6 := netip.MustParseAddrPort("[::1]:8081")
	res, err := h.Runtime.Exec(ctx,
		must(t)(runtime.AddServer("be_rr", "srv2", ep, 7, "check inter 5s")),
		must(t)(runtime.EnableHealth("be_rr", "srv2")),
		must(t)(runtime.AddServer("be_rr", "srv3", v6, 1, "")),
		must(t)(runtime.AddServer("be_rr", "srv2", ep, 7, "")),
		must(t)(runtime.AddServer("be_static", "srv2", ep, 1, "")),
		must(t)(runtime.AddServer("be_rr", "srv4", ep, 1, "cookie s4")),
		must(t)(runtime.SetState("be_rr", "srv3", runtime.StateReady)),
		must(t)(runtime.DelServer("be_rr", "srv3")),
		must(t)(runtime.SetState("be_rr", "srv3", runtime.StateMaint)),
		must(t)(runtime.DelServer("be_rr", "srv3")),
		must(t)(runtime.DelServer("be_rr", "srv1")),
		must(t)(runtime.ShowServersState("be_rr")),
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []error{nil, nil, nil, runtime.ErrServerExists, runtime.ErrNotDynamic, runtime.ErrNotDynamic,
		nil, runtime.ErrRefused, nil, nil, nil, nil}
	for i, r := range res {
		if want[i] == nil && r.Err != nil || want[i] != nil && !errors.Is(r.Err, want[i]) {
			t.Errorf("%q: err = %v, want %v", r.Command, r.Err, want[i])
		}
	}
	got, err := runtime.ParseServersState(res[len(res)-1].Answer)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "srv2" || got[0].Port != 8080 || got[0].Weight != 7 || got[0].State() != runtime.StateMaint {
		t.Fatalf("be_rr after add/del: %+v, want only srv2 in maint at 127.0.0.9:8080 weight 7", got)
	}
}

func TestMasterReload(t *testing.T) {
	h := startHAProxy(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := h.Procs()
	after, err := h.Master.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := after.Current()
	old, _ := before.Current()
	if cur.PID == old.PID || after.Master.Reloads != before.Master.Reloads+1 {
		t.Fatalf("no new worker: before %+v after %+v", before, after)
	}

	// A config HAProxy refuses: the master counts a failed reload and the
	// old worker keeps serving.
	cfg, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	testbed.WriteFile(t, h.ConfigPath, string(cfg)+"    no_such_keyword here\n")
	_, err = h.Master.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "reload failed") {
		t.Fatalf("reload of a broken config: err = %v", err)
	}
	info, err := h.Info()
	if err != nil || info.Pid != cur.PID {
		t.Fatalf("after the failed reload the worker is %+v (%v), want pid %d", info, err, cur.PID)
	}
}

func BenchmarkApply1000Servers(b *testing.B) {
	const n = 1000
	h := startHAProxy(b, n)
	ctx := context.Background()
	batches := [2][]runtime.Command{}
	for k := range batches {
		for i := 1; i <= n; i++ {
			srv := fmt.Sprintf("srv%d", i)
			a := netip.AddrFrom4([4]byte{127, 0, byte(1 + k), byte(i % 250)})
			batches[k] = append(batches[k],
				must(b)(runtime.SetAddr("be_web", srv, a, 10000+i)),
				must(b)(runtime.SetState("be_web", srv, runtime.StateReady)))
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := h.Runtime.Run(ctx, batches[i%2]...)
		if err != nil || len(res) != 2*n {
			b.Fatalf("%d results: %v", len(res), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/1000servers")
}
