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
