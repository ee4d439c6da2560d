package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hapctl/hapctl/internal/api"
)

// fakeAPI answers like the admin API and records the requests.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []string // "METHOD path auth body"
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("Authorization")+" "+string(body))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	at := time.Now().Add(-time.Minute)
	switch {
	case r.Header.Get("Authorization") == "Bearer wrong":
		w.WriteHeader(403)
		_, _ = io.WriteString(w, `{"error":"wrong token"}`)
	case strings.Contains(r.URL.Path, "/servers/srv9/"):
		w.WriteHeader(409)
		_, _ = io.WriteString(w, `{"error":"server srv9 of be_web is free: nothing to drain"}`)
	case r.Method == "POST":
		_ = json.NewEncoder(w).Encode(api.OverrideResult{Backend: "be_web", Server: "srv1", ServiceID: "web-1", Address: "10.0.0.1:80",
			Action: "drain", State: "drain", Applied: true})
	case r.URL.Path == "/v1/backends" && r.Method == "GET":
		// As the API answers: {"backends": [...]}.
		_ = json.NewEncoder(w).Encode(api.BackendList{Backends: []api.Backend{{Name: "be_web", Service: "web"}, {Name: "be_api", Service: "api"}}})
	case r.URL.Path == "/v1/backends/be_web":
		_ = json.NewEncoder(w).Encode(api.Backend{Name: "be_web", Service: "web", Growth: "dynamic", LastSync: &at, Slots: []api.Slot{
			{Name: "srv1", Address: "10.0.0.1", Port: 80, Weight: 1, AdminState: "drain", OperState: "up", ServiceID: "web-1", Node: "n1",
				Override: &api.Override{State: "drain", Reason: "deploy 42", By: "alice", At: at}},
			{Name: "srv2", Address: "2001:db8::2", Port: 8080, Weight: 10, AdminState: "ready", OperState: "up", ServiceID: "web-2", Node: "n2"},
			{Name: "srv3", Address: "127.0.0.1", Port: 1, AdminState: "maint", OperState: "down", Free: true},
			{Name: "srv4", Address: "127.0.0.1", Port: 1, AdminState: "maint", OperState: "down", Free: true},
		}, Drains: []api.Drain{{ServiceID: "web-7", Override: api.Override{State: "maint", At: at}}}})
	default:
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"error":"no managed backend \"be_x\""}`)
	}
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func TestClientCommands(t *testing.T) {
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("HAPCTL_ADDR", srv.URL)
	t.Setenv("HAPCTL_TOKEN", "envtoken")

	// Flags after the arguments; the token comes from the environment.
	out, err := run("drain", "be_web", "10.0.0.1:80", "--reason", "deploy 42", "--by", "alice")
	if err != nil || !strings.Contains(out, "be_web/srv1 (web-1) at 10.0.0.1:80 is drain") {
		t.Fatalf("drain: %q %v", out, err)
	}
	want := `POST /v1/backends/be_web/servers/10.0.0.1:80/drain Bearer envtoken {"by":"alice","reason":"deploy 42"}`
	if got := f.requests()[0]; got != want {
		t.Fatalf("request\n got  %s\n want %s", got, want)
	}
	// --token wins over the environment; undrain has no --reason.
	if _, err := run("undrain", "--token", "flagtoken", "be_web", "srv1"); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[1]; !strings.HasPrefix(got, "POST /v1/backends/be_web/servers/srv1/undrain Bearer flagtoken") {
		t.Fatalf("undrain request %s", got)
	}
	if _, err := run("undrain", "be_web", "srv1", "--reason", "x"); !isUsage(err) {
		t.Fatalf("undrain --reason: %v, want a usage error", err)
	}

	// API errors are operation failures (exit 1) with the API's message.
	_, err = run("drain", "be_web", "srv9")
	if err == nil || isUsage(err) || err.Error() != "server srv9 of be_web is free: nothing to drain" {
		t.Fatalf("drain srv9: %v", err)
	}
	_, err = run("maint", "be_web", "srv1", "--token", "wrong")
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "wrong token — check --token") {
		t.Fatalf("wrong token: %v", err)
	}
	// Usage errors: exit 2.
	for _, args := range [][]string{{"drain", "be_web"}, {"drain", "a", "b", "c"}, {"status", "-o", "yaml"}, {"status", "a", "b"},
		{"status", "--addr", "not an address"}} {
		if _, err := run(args...); !isUsage(err) {
			t.Errorf("hapctl %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}

	// status: a table for a person, the API's JSON with -o json.
	out, err = run("status", "be_web")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"backend be_web  service web  slots 4 (2 bound, 2 free)",
		"SERVER  ADDRESS",
		"srv1    10.0.0.1:80",
		`drain by alice 1m0s ago: "deploy 42"`,
		"srv2    [2001:db8::2]:8080  10",
		"free: srv3-srv4",
		"maint of web-7, which has no slot",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("status", "be_web", "-o", "json")
	var b api.Backend
	if err != nil || json.Unmarshal([]byte(out), &b) != nil || b.Name != "be_web" || len(b.Slots) != 4 {
		t.Fatalf("status -o json: %v %q", err, out)
	}
	if _, err := run("status", "be_x"); err == nil || isUsage(err) || !strings.Contains(err.Error(), `no managed backend "be_x"`) {
		t.Fatalf("status be_x: %v", err)
	}
}

func TestClientUnixSocketAndUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &fakeAPI{}}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Close() }()
	if out, err := run("status", "be_web", "--addr", "unix:"+path); err != nil || !strings.Contains(out, "backend be_web") {
		t.Fatalf("status over unix socket: %q %v", out, err)
	}
	_, err = run("status", "--addr", "unix:"+path+".nope")
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "cannot reach hapctl at unix:") {
		t.Fatalf("unreachable: %v", err)
	}
}

func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

func TestClientRefusesAddressesThatMisroute(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"http://h?x=1", "http://h#frag", "h/x:80", "#0:", "a b:80", "h:80\n", "http://u:p@h:1",
		"http://h/prefix", "http://h:99999", "http://", "nowhere"} {
		cf := clientFlags{addr: addr}
		if c, err := cf.client(); err == nil || !isUsage(err) {
			t.Errorf("--addr %q accepted (base %v)", addr, c)
		}
	}
	for addr, base := range map[string]string{"127.0.0.1:9680": "http://127.0.0.1:9680", "http://[::1]:9680/": "http://[::1]:9680",
		"https://hapctl.example": "https://hapctl.example", "http://[fe80::1%25eth0]:9680": "http://[fe80::1%25eth0]:9680"} {
		cf := clientFlags{addr: addr}
		c, err := cf.client()
		if err != nil || c.base != base {
			t.Errorf("--addr %q: base %v, %v; want %s", addr, c, err, base)
		}
	}
}

// TestCompletion checks Tab completion of backends and servers from the
// running hapctl's API, and that it offers nothing, quickly, without one.
func TestCompletion(t *testing.T) {
	srv := httptest.NewServer(&fakeAPI{})
	defer srv.Close()
	complete := func(args ...string) []string {
		t.Helper()
		out, err := run(append([]string{"__complete"}, args...)...)
		if err != nil {
			t.Fatalf("__complete %v: %v\n%s", args, err, out)
		}
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion ended") && l != "" {
				names = append(names, l)
			}
		}
		return names
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drain", "--addr", srv.URL, ""}, "be_api be_web"},
		{[]string{"status", "--addr", srv.URL, "be_w"}, "be_web"},
		{[]string{"status", "--addr", srv.URL, "be_web", ""}, ""},
		// Bound slots and their IDs, and the ID of an instance under a
		// maint that has left Consul (undrain takes it); never a free slot.
		{[]string{"undrain", "--addr", srv.URL, "be_web", ""}, "srv1 srv2 web-1 web-2 web-7"},
		{[]string{"maint", "--addr", srv.URL, "be_web", "web-"}, "web-1 web-2 web-7"},
		{[]string{"drain", "--addr", srv.URL, "be_web", "srv1", ""}, ""},
		{[]string{"drain", "--addr", srv.URL, "be_nosuch", ""}, ""},
	} {
		if got := strings.Join(complete(c.args...), " "); got != c.want {
			t.Errorf("__complete %v = %q, want %q", c.args, got, c.want)
		}
	}
	// A hapctl that never answers: nothing, within the completion timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	if got := complete("drain", "--addr", ln.Addr().String(), ""); len(got) != 0 {
		t.Errorf("completion from a silent API offered %v", got)
	}
}

// TestEveryCommandHasExamples checks that every subcommand's --help shows
// examples.
func TestEveryCommandHasExamples(t *testing.T) {
	for _, c := range newRoot().Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue // cobra's own
		}
		out, err := run(c.Name(), "--help")
		if err != nil || !strings.Contains(out, "Examples:\n  hapctl "+c.Name()) {
			t.Errorf("hapctl %s --help shows no example (%v):\n%s", c.Name(), err, out)
		}
	}
}

// Something that is not hapctl answers: the message says what answered and
// what it said, never an empty "hapctl: ".
func TestClientSaysWhenSomethingElseAnswers(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"", "answered 404 Not Found: an empty answer (is that hapctl's admin API?"},
		{"Invalid URL path: not a recognized HTTP API endpoint", "answered 404 Not Found: Invalid URL path: not a recognized"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, c.body)
		}))
		for _, args := range [][]string{{"status"}, {"drain", "be_web", "srv1"}} {
			_, err := run(append(args, "--addr", srv.URL)...)
			if err == nil || !strings.Contains(err.Error(), srv.URL+" "+c.want) {
				t.Errorf("%v with %q answered: %v", args, c.body, err)
			}
		}
		srv.Close()
	}
}
