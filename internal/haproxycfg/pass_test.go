package haproxycfg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/runtime"
)

// passRuntime answers `show servers state` with two slots of be_web, one
// bound, and runs during() on each call: what happens while a pass renders.
type passRuntime struct {
	during func()
}

func (p *passRuntime) Exec(_ context.Context, _ ...runtime.Command) ([]runtime.Result, error) {
	if p.during != nil {
		p.during()
	}
	return []runtime.Result{{Answer: "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n" +
		"3 be_web 1 srv1 10.0.0.5 2 0 1 8080\n3 be_web 2 srv2 127.0.0.1 0 1 1 1\n"}}, nil
}

func passReloader(t *testing.T, rt Runtime) (*Reloader, string) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	data := "backend be_web\n    server srv1 127.0.0.1:1 disabled\n    server srv2 127.0.0.1:1 disabled\n"
	if err := os.WriteFile(cfg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Reloader{ConfigFile: cfg, StateFile: filepath.Join(dir, "state"), Runtime: rt,
		Backends: []SlotSpec{{Backend: "be_web"}}, Log: zerolog.Nop(), persist: true}, cfg
}

// A pass that only writes the files writes the runtime state, and does not
// act on a slot count asked for while it runs: that waits for its own pass
// (settle time, reload_min_interval). Master is nil: a reload would panic.
func TestPersistPassLeavesNewRequestsAlone(t *testing.T) {
	rt := &passRuntime{}
	r, cfg := passReloader(t, rt)
	rt.during = func() { r.Want("be_web", 4) }
	r.attemptPending(context.Background())
	if r.err != nil || r.failures != 0 {
		t.Fatalf("pass failed: %v", r.err)
	}
	data, _ := os.ReadFile(cfg)
	if !strings.Contains(string(data), "server srv1 10.0.0.5:8080 weight 1\n") || strings.Contains(string(data), "srv3") {
		t.Fatalf("file after the pass:\n%s", data)
	}
	if st := r.Status(); st.Pending["be_web"] != 4 || !st.LastReload.IsZero() {
		t.Fatalf("the request made during the pass: %+v", st)
	}
}

// Someone saves haproxy.cfg while a pass renders it: their file stays, the
// pass is tried again shortly, and it is no failure (no metric, no /readyz).
func TestPersistPassYieldsToAnEdit(t *testing.T) {
	rt := &passRuntime{}
	r, cfg := passReloader(t, rt)
	edited := "# edited by hand\nbackend be_web\n    server srv1 127.0.0.1:1 disabled\n    server srv2 127.0.0.1:1 disabled\n"
	failed := ""
	r.OnFailure = func(stage string) { failed = stage }
	rt.during = func() {
		if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
			t.Error(err)
		}
	}
	r.attemptPending(context.Background())
	if data, _ := os.ReadFile(cfg); string(data) != edited {
		t.Fatalf("the edit was overwritten:\n%s", data)
	}
	if r.err != nil || r.failures != 0 || failed != "" {
		t.Fatalf("an edit counted as a failure: %v (stage %q)", r.err, failed)
	}
	if at, ok := r.due(); !ok || at.IsZero() {
		t.Fatal("no pass pending after the edit")
	}
	// The next pass renders from the edited file.
	rt.during = nil
	r.attemptPending(context.Background())
	data, _ := os.ReadFile(cfg)
	if !strings.HasPrefix(string(data), "# edited by hand\n") || !strings.Contains(string(data), "server srv1 10.0.0.5:8080") {
		t.Fatalf("second pass:\n%s", data)
	}
}
