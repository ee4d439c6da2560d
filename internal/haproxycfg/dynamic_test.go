package haproxycfg

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	parser "github.com/haproxytech/client-native/v5/config-parser"
)

func TestDynamicSupport(t *testing.T) {
	t.Parallel()
	cfg := `
defaults
    mode http
    balance leastconn

backend be_default
    server a 10.0.0.1:80

backend be_rr
    balance roundrobin

backend be_static
    balance static-rr

backend be_source
    balance source

backend be_source_consistent
    balance source
    hash-type consistent

backend be_uri
    balance uri

defaults static
    balance static-rr

backend be_from_static from static
    mode http
`
	p, err := Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ backend, options, want string }{
		{"be_default", "", ""},
		{"be_rr", "check inter 2s", ""},
		{"be_static", "", "static-rr"},
		{"be_source", "", "map-based"},
		{"be_source_consistent", "check", ""},
		{"be_uri", "", "map-based"},
		{"be_from_static", "", "static-rr"},
		{"be_rr", "check cookie s1", `"cookie"`},
		{"be_rr", "resolvers dns", `"resolvers"`},
		{"be_new", "", "static-rr"}, // a new backend follows the last defaults
	}
	for _, tt := range tests {
		got := p.DynamicSupport(tt.backend, tt.options)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("DynamicSupport(%s, %q) = %q, want one containing %q", tt.backend, tt.options, got, tt.want)
		}
	}
	p3, err := Parse([]byte("defaults\n    default-server inter 3s\nbackend be_a\n    balance roundrobin\ndefaults plain\nbackend be_b from plain\n    default-server check\nbackend be_c from plain\n"))
	if err != nil {
		t.Fatal(err)
	}
	for b, want := range map[string]bool{"be_a": true, "be_b": true, "be_c": false, "be_missing": false} {
		if got := p3.DefaultServer(b); got != want {
			t.Errorf("DefaultServer(%s) = %v, want %v", b, got, want)
		}
	}
	p2, err := Parse([]byte("defaults named\n    balance static-rr\n\ndefaults\n    balance hdr(host)\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p2.DynamicSupport("be_new", ""); !strings.Contains(got, "balance hdr with map-based") {
		t.Errorf("new backend after an unnamed hdr() defaults: %q", got)
	}
}

// TestParseGivesUpOnStuckParser: client-native loops forever on `inter` at
// the end of a server line. Parse refuses the lines known to do that before
// starting it, gives up on a parser that hangs anyway (here a stand-in) with
// an error that says why, refuses to start more after maxStuck, and parses
// other files in between. The test runs in a child process, which takes the
// hung goroutines with it when it exits.
func TestParseGivesUpOnStuckParser(t *testing.T) {
	if os.Getenv("HAPCTL_TEST_STUCK_PARSE") == "" {
		t.Parallel()
		// Known lines are refused at once, with no parser started.
		_, err := Parse([]byte("global\n    maxconn 10\n\nbackend be_web\n    server web1 10.0.0.1:80 check inter\n"))
		for _, want := range []string{"haproxy -c", `line 5: "inter" takes a value and none follows it`} {
			if !errors.Is(err, ErrParseStuck) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want ErrParseStuck saying %q", err, want)
			}
		}
		if _, err := Parse([]byte("backend be_web\n    default-server check(x\n")); !errors.Is(err, ErrParseStuck) {
			t.Fatalf("check(x: err = %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestParseGivesUpOnStuckParser$", "-test.v", "-test.timeout=1m")
		cmd.Env = append(os.Environ(), "HAPCTL_TEST_STUCK_PARSE=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestParseGivesUpOnStuckParser")) {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	parseTimeout = 200 * time.Millisecond
	real := newParser
	var started atomic.Int32
	newParser = func([]byte) (parser.Parser, error) { started.Add(1); select {} } // a parser that never finishes
	for i := range maxStuck {
		_, err := Parse([]byte("backend be_web\n    server web1 10.0.0.1:80\n"))
		if !errors.Is(err, ErrParseStuck) || !strings.Contains(err.Error(), "did not finish within 200ms") {
			t.Fatalf("stuck parser %d: err = %v", i, err)
		}
	}
	_, err := Parse([]byte("backend be_web\n    server web1 10.0.0.1:80\n"))
	if !errors.Is(err, ErrParseStuck) || !strings.Contains(err.Error(), "restart hapctl") || started.Load() != maxStuck {
		t.Fatalf("after %d stuck parsers: err = %v, %d parsers started; want a refusal without a new one", maxStuck, err, started.Load())
	}
	newParser, stuckParsers = real, 0
	p, err := Parse([]byte("backend be_web\n    server web1 10.0.0.1:80 check inter 2s\n"))
	if err != nil {
		t.Fatalf("after giving up: %v", err)
	}
	if s, _ := p.Servers("be_web"); len(s) != 1 {
		t.Fatalf("servers %v", s)
	}
}

func TestOtherServersWarning(t *testing.T) {
	p, err := Parse([]byte("backend be_web\n    server web-1 10.0.0.1:80 check\n    server srv1 10.0.0.2:80\n    server web-2 10.0.0.3:80\n\nbackend be_api\n    server srv1 10.0.0.4:80\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := p.OtherServersWarning("be_web"); !strings.Contains(w, "backend be_web has server lines that are not hapctl's slots (web-1, web-2)") {
		t.Fatalf("be_web: %q", w)
	}
	for _, b := range []string{"be_api", "be_nope"} {
		if w := p.OtherServersWarning(b); w != "" {
			t.Fatalf("%s: %q", b, w)
		}
	}
	// validate, plan and the daemon's start all warn through ConfigWarnings,
	// also when the state-file warnings stop early.
	warnings := ConfigWarnings(p, "", []string{"be_web", "be_api"})
	if len(warnings) != 2 || !strings.Contains(warnings[0], "state_file is empty") || !strings.Contains(warnings[1], "(web-1, web-2)") {
		t.Fatalf("config warnings %q", warnings)
	}
}
