package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// hostile is one registration straight into Consul's catalog, which checks
// far less than an agent does.
type hostile struct {
	id, addr, nodeAddr string
	port               int
	tags               []string
	valid              bool
}

func (h hostile) register(t *testing.T, c *api.Client, n int) error {
	t.Helper()
	node := fmt.Sprintf("ext-%d", n)
	_, err := c.Catalog().Register(&api.CatalogRegistration{
		Node: node, Address: h.nodeAddr,
		Service: &api.AgentService{ID: h.id, Service: "web", Address: h.addr, Port: h.port, Tags: h.tags},
		Check:   &api.AgentCheck{Node: node, CheckID: "check-" + fmt.Sprint(n), Name: "check", Status: api.HealthPassing, ServiceID: h.id},
	}, nil)
	return err
}

// poison are strings that must never reach HAProxy or its config file.
var poison = []string{"shutdown", "set server", "localhost", "evil.example", "\x01", "\x7f", "%lo", "10.9.9.9"}

func TestHostileRegistrations(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 4})
	ok4 := startBackend(t, "ok-v4")
	ok6 := startBackendOn(t, "ok-v6", "::1")
	b.startHapctl()

	manyTags := make([]string, 300)
	for i := range manyTags {
		manyTags[i] = fmt.Sprintf("t%d", i)
	}
	regs := []hostile{
		{id: "ok-v4", addr: "127.0.0.1", port: ok4.port, valid: true},
		{id: "ok-v6", addr: "::1", port: ok6.port, valid: true},
		{id: "semicolon", addr: "127.0.0.1;shutdown sessions server be_web/srv1", port: 80},
		{id: "newline", addr: "127.0.0.1\nset server be_web/srv1 state maint", port: 80},
		{id: "space", addr: "127.0.0.1 80", port: 80},
		{id: "hostname", addr: "evil.example", port: 80},
		{id: "node-hostname", nodeAddr: "localhost", port: 80},
		{id: "zone", addr: "fe80::1%lo", port: 80},
		{id: "bracketed", addr: "[::1]", port: 80},
		{id: "port-0", addr: "10.9.9.9", port: 0},
		{id: "port-65536", addr: "10.9.9.9", port: 65536},
		{id: "port-70000", addr: "10.9.9.9", port: 70000},
		{id: "port-negative", addr: "10.9.9.9", port: -1},
		{id: "ctl\x01id", addr: "10.9.9.9", port: 80},
		{id: "del\x7fid", addr: "10.9.9.9", port: 81},
		{id: "ctl-tag", addr: "10.9.9.9", port: 82, tags: []string{"ok", "bad\nset server be_web/srv1 state maint"}},
		{id: "many-tags", addr: "10.9.9.9", port: 83, tags: manyTags},
		{id: "unspecified", addr: "0.0.0.0", port: 80},
		{id: "unspecified-v6", addr: "::", port: 80},
		{id: "multicast", addr: "224.0.0.1", port: 80},
		{id: "wéb-unicode", addr: "10.9.9.9", port: 84},
		{id: strings.Repeat("long", 80), addr: "10.9.9.9", port: 85},
		{id: "zz-duplicate", addr: "127.0.0.1", port: ok4.port}, // same endpoint as ok-v4, registered later
	}
	var invalid []string
	for i, h := range regs {
		if h.nodeAddr == "" {
			h.nodeAddr = "127.0.0.1"
		}
		if err := h.register(t, b.consul.Client, i); err != nil {
			if h.valid {
				t.Fatalf("register %q: %v", h.id, err)
			}
			t.Logf("consul itself refuses %q: %v", h.id, err)
			continue
		}
		if !h.valid {
			invalid = append(invalid, h.id)
		}
	}

	b.waitSlot(ok4.endpoint(), runtime.StateReady, -1)
	b.waitSlot(ok6.endpoint(), runtime.StateReady, -1)
	l := startLoad(t, b.frontend, 4, 10*time.Millisecond)
	testbed.Eventually(t, 10*time.Second, "every invalid instance counted", func() error {
		if got := b.metric(`hapctl_invalid_instances_total{backend="be_web"}`); int(got) != len(invalid) {
			return fmt.Errorf("hapctl_invalid_instances_total = %v, want %d (%q)", got, len(invalid), invalid)
		}
		return nil
	})
	for _, id := range invalid {
		logged := id // as the log names it: quoted and clipped when it is not plain
		if strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || r > unicode.MaxASCII }) || len(id) > 256 {
			logged = strconv.Quote(consul.Clip(id))
		}
		field, _ := json.Marshal(logged)
		if !strings.Contains(b.hapctl.Output(), `"instance":`+string(field)) {
			t.Errorf("no log line names invalid instance %q", id)
		}
	}
	if got := len(b.slots()); got != 4 {
		t.Fatalf("slots %v", b.slots())
	}
	bound := 0
	for _, s := range b.haproxy.Servers("be_web") {
		if s.State() != runtime.StateMaint {
			bound++
		}
	}
	if bound != 2 {
		t.Fatalf("%d slots in service, want 2: %v", bound, b.slots())
	}
	// Both valid instances take traffic, the IPv6 one too.
	l.waitMore(t, 200)
	if ok4.requests.Load() == 0 || ok6.requests.Load() == 0 {
		t.Fatalf("requests: v4 %d, v6 %d", ok4.requests.Load(), ok6.requests.Load())
	}
	// Nothing hostile reached HAProxy or the config file.
	state := strings.Join(b.slots(), "\n")
	file := fileContent(t, b.haproxy.ConfigPath)
	for _, p := range poison {
		if strings.Contains(state, p) || strings.Contains(file, p) {
			t.Fatalf("%q reached haproxy:\n%s\n--- config ---\n%s", p, state, file)
		}
	}
	// The valid ones keep syncing around the invalid ones.
	if _, err := b.consul.Client.Catalog().Deregister(&api.CatalogDeregistration{Node: "ext-1", ServiceID: "ok-v6"}, nil); err != nil {
		t.Fatal(err)
	}
	b.waitSlot(ok6.endpoint(), runtime.StateMaint, -1)
	if err := b.ready(); err != nil {
		t.Fatalf("invalid instances made hapctl unready: %v", err)
	}
	l.noFailures(t)
}

func TestAPIAbuse(t *testing.T) {
	const token = "abuse-token"
	b := newBed(t, bedOptions{minSlots: 4, token: token})
	be := startBackend(t, "web-1")
	b.register(be.name, be, 1)
	b.startHapctl()
	b.waitSlot(be.endpoint(), runtime.StateReady, -1)
	want := b.slots()
	okCmds := b.metric(`hapctl_runtime_commands_total{result="ok"}`)

	drain := "/v1/backends/be_web/servers/srv1/drain"
	cases := []struct {
		name, method, path, auth, body string
		code                           int
	}{
		{"no token", "POST", drain, "", `{}`, 401},
		{"wrong token", "POST", drain, "Bearer nope", `{}`, 403},
		{"basic auth", "POST", drain, "Basic " + token, `{}`, 401},
		{"token without scheme", "POST", drain, token, `{}`, 401},
		{"malformed json", "POST", drain, "Bearer " + token, `{"reason":`, 400},
		{"not an object", "POST", drain, "Bearer " + token, `["x"]`, 400},
		{"unknown field", "POST", drain, "Bearer " + token, `{"state":"ready"}`, 400},
		{"two objects", "POST", drain, "Bearer " + token, `{}{}`, 400},
		{"control chars in reason", "POST", drain, "Bearer " + token, `{"reason":"a\u0000b"}`, 400},
		{"oversized body", "POST", drain, "Bearer " + token, `{"reason":"` + strings.Repeat("x", 17<<10) + `"}`, 413},
		{"dot-dot backend", "POST", "/v1/backends/..%2Fbe_web/servers/srv1/drain", "Bearer " + token, `{}`, 404},
		{"dot-dot server", "POST", "/v1/backends/be_web/servers/..%2F..%2Fx/drain", "Bearer " + token, `{}`, 404},
		{"newline in server", "POST", "/v1/backends/be_web/servers/srv1%0Aset%20server/drain", "Bearer " + token, `{}`, 404},
		{"semicolon in server", "POST", "/v1/backends/be_web/servers/srv1;shutdown/drain", "Bearer " + token, `{}`, 404},
		{"semicolon in backend", "POST", "/v1/backends/be_web;x/servers/srv1/drain", "Bearer " + token, `{}`, 404},
		{"unknown backend", "POST", "/v1/backends/be_nope/servers/srv1/drain", "Bearer " + token, `{}`, 404},
		{"huge server name", "POST", "/v1/backends/be_web/servers/" + strings.Repeat("a", 8000) + "/drain", "Bearer " + token, `{}`, 404},
		{"endpoint port 0", "POST", "/v1/backends/be_web/servers/127.0.0.1:0/drain", "Bearer " + token, `{}`, 404},
		{"unknown action", "POST", "/v1/backends/be_web/servers/srv1/ready", "Bearer " + token, `{}`, 404},
		{"GET a mutating route", "GET", drain, "Bearer " + token, ``, 405},
		{"free slot", "POST", "/v1/backends/be_web/servers/srv4/drain", "Bearer " + token, `{}`, 409},
		{"path escape", "GET", "/v1/backends/%2e%2e/%2e%2e/etc/passwd", "", ``, 404},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, "http://"+b.apiAddr+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.code)
		}
		if resp.StatusCode != 405 && !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: answer without an error message: %s", c.name, body)
		}
	}
	// Garbage that is not HTTP at all.
	conn, err := net.DialTimeout("tcp", b.apiAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("\x00\x01\x02 garbage\r\n\r\n"))
	answer, _ := io.ReadAll(conn)
	_ = conn.Close()
	if !strings.HasPrefix(string(answer), "HTTP/1.1 400") {
		t.Errorf("garbage got %q", answer)
	}

	keys, _, err := b.consul.Client.KV().Keys("hapctl/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys written: %v", keys)
	}
	if got := b.slots(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("haproxy changed: %v, before %v", got, want)
	}
	if got := b.metric(`hapctl_runtime_commands_total{result="ok"}`); got != okCmds {
		t.Fatalf("%.0f runtime commands sent", got-okCmds)
	}
	if err := b.ready(); err != nil {
		t.Fatal(err)
	}
}

func TestFlapping(t *testing.T) {
	b, _, l := serving(t, bedOptions{minSlots: 8}, 3)
	flappy := startBackend(t, "flappy")
	b.register(flappy.name, flappy, 1)
	b.waitSlot(flappy.endpoint(), runtime.StateReady, -1)
	home, _ := b.slotOf(flappy.endpoint())
	cmds := b.metric(`hapctl_runtime_commands_total{result="ok"}`)
	reloads := b.metric(`hapctl_reloads_total{reason="grow"}`) + b.metric(`hapctl_reloads_total{reason="shrink"}`)
	cpu := b.metric("process_cpu_seconds_total")

	// 10 flips a second for 10 s: 100 changes, ending passing.
	const flips = 100
	pace := time.NewTicker(100 * time.Millisecond)
	defer pace.Stop()
	start := time.Now()
	for i := range flips {
		<-pace.C
		status := api.HealthCritical
		if i%2 == 1 {
			status = api.HealthPassing
		}
		b.consul.SetCheck(flappy.name, status)
	}
	b.waitSlot(flappy.endpoint(), runtime.StateReady, -1)
	took := time.Since(start)

	sent := b.metric(`hapctl_runtime_commands_total{result="ok"}`) - cmds
	used := b.metric("process_cpu_seconds_total") - cpu
	t.Logf("%d flips in %v: %.0f runtime commands, %.2fs of hapctl CPU (%.1f%% of one core)", flips, took.Round(time.Millisecond),
		sent, used, 100*used/took.Seconds())
	if sent > flips {
		t.Fatalf("%.0f runtime commands for %d changes in consul", sent, flips)
	}
	if sent < flips/4 {
		t.Fatalf("only %.0f runtime commands for %d changes: flips were not followed", sent, flips)
	}
	if now, _ := b.slotOf(flappy.endpoint()); now.Name != home.Name {
		t.Fatalf("the flapping instance moved from %s to %s", home.Name, now.Name)
	}
	if got := b.metric(`hapctl_reloads_total{reason="grow"}`) + b.metric(`hapctl_reloads_total{reason="shrink"}`); got != reloads {
		t.Fatalf("%.0f reloads while flapping", got-reloads)
	}
	if v := b.metric(`hapctl_runtime_commands_total{result="error"}`); v != 0 {
		t.Fatalf("%v runtime commands failed", v)
	}
	l.noFailures(t)
}
