package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	hapi "github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// fleet is several HAProxy + hapctl pairs on one Consul.
type fleet struct {
	consul *testbed.Consul
	nodes  []*bed
}

func newFleet(t testing.TB, n int, opts bedOptions) *fleet {
	t.Helper()
	f := &fleet{consul: testbed.StartConsul(t)}
	opts.consul = f.consul
	for i := 0; i < n; i++ {
		f.nodes = append(f.nodes, newBed(t, opts))
	}
	return f
}

// waitAll waits until the slot holding endpoint has state on every node.
func (f *fleet) waitAll(endpoint string, state runtime.State) {
	for _, n := range f.nodes {
		n.waitSlot(endpoint, state, -1)
	}
}

// post calls a mutating API route and decodes the answer.
func post(t testing.TB, b *bed, token, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+b.apiAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: %d %s: %v", path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func (b *bed) backendView() hapi.Backend {
	b.t.Helper()
	var v hapi.Backend
	resp, err := http.Get("http://" + b.apiAddr + "/v1/backends/be_web")
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		b.t.Fatalf("GET /v1/backends/be_web: %d %v", resp.StatusCode, err)
	}
	return v
}

func (f *fleet) drainKeys(t *testing.T) []string {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = f.consul.Addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := c.KV().Keys("hapctl/drains/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestFleetDrains drains, undrains and maints servers through the CLI and
// the API of two HAProxy + hapctl pairs on one Consul, under load, across a
// hapctl restart and an HAProxy reload.
func TestFleetDrains(t *testing.T) {
	const token = "fleet-token"
	f := newFleet(t, 2, bedOptions{minSlots: 4, token: token})
	a, b := f.nodes[0], f.nodes[1]
	backends := []*backend{startBackend(t, "web-1"), startBackend(t, "web-2"), startBackend(t, "web-3")}
	for _, be := range backends {
		a.register(be.name, be, 1)
	}
	a.startHapctl()
	b.startHapctl()
	for _, be := range backends {
		f.waitAll(be.endpoint(), runtime.StateReady)
	}
	loadA := startLoad(t, a.frontend, 3, 5*time.Millisecond)
	loadB := startLoad(t, b.frontend, 3, 5*time.Millisecond)
	loadA.waitMore(t, 100)

	// A long request lands on one server of node A; that server is drained.
	target, slowDone := startSlow(t, a.frontend, backends)
	propagated := make([]float64, len(f.nodes))
	for i, n := range f.nodes {
		propagated[i] = n.metric("hapctl_propagation_seconds_count")
	}
	env := []string{"HAPCTL_ADDR=http://" + a.apiAddr, "HAPCTL_TOKEN=" + token}
	out, code := hapctlEnv(t, env, "drain", "be_web", target.endpoint(), "--reason", "deploy 42")
	if code != 0 || !strings.Contains(out, "is drain") {
		t.Fatalf("hapctl drain: exit %d\n%s", code, out)
	}
	// The call returns once node A applied it: no waiting here.
	if s, _ := a.slotOf(target.endpoint()); s.State() != runtime.StateDrain {
		t.Fatalf("node A: %s is %s right after the drain call returned", s.Name, s.State())
	}
	b.waitSlot(target.endpoint(), runtime.StateDrain, -1)
	for i, n := range f.nodes {
		if v := n.metric(`hapctl_slots{backend="be_web",state="drain"}`); v != 1 {
			t.Fatalf("hapctl_slots drain = %v, want 1", v)
		}
		if v := n.metric(`hapctl_slots{backend="be_web",state="ready"}`); v != 2 {
			t.Fatalf("hapctl_slots ready = %v, want 2", v)
		}
		// The drain is a Consul answer too: its propagation is measured.
		if v := n.metric("hapctl_propagation_seconds_count"); v != propagated[i]+1 {
			t.Fatalf("node %d: hapctl_propagation_seconds observed %v times, want %v", i, v, propagated[i]+1)
		}
	}
	if keys := f.drainKeys(t); len(keys) != 1 || keys[0] != "hapctl/drains/be_web/"+target.name {
		t.Fatalf("drain keys in consul: %v", keys)
	}

	// New requests avoid the drained server on both nodes.
	served := target.requests.Load()
	loadA.waitMore(t, 200)
	loadB.waitMore(t, 200)
	if n := target.requests.Load() - served; n != 0 {
		t.Fatalf("drained %s got %d new requests", target.name, n)
	}
	// The long request in flight completes.
	close(target.release)
	if got := <-slowDone; got != "200 "+target.name {
		t.Fatalf("long request: %s", got)
	}

	// status shows the drain with its reason, on both nodes.
	out, code = hapctlEnv(t, []string{"HAPCTL_ADDR=" + b.apiAddr}, "status")
	if code != 0 || !strings.Contains(out, "drain by 127.0.0.1:") || !strings.Contains(out, `"deploy 42"`) {
		t.Fatalf("hapctl status on node B: exit %d\n%s", code, out)
	}

	// Restart hapctl A: still drained, and not a single command sent.
	a.stopHapctl()
	a.startHapctl()
	if s, _ := a.slotOf(target.endpoint()); s.State() != runtime.StateDrain {
		t.Fatalf("after restart: %s is %s", s.Name, s.State())
	}
	if n := a.metric(`hapctl_runtime_commands_total{result="ok"}`); n != 0 {
		t.Fatalf("restart sent %v runtime commands", n)
	}

	// Reload HAProxy A by hand: still drained.
	before := a.haproxy.Procs()
	if _, err := a.haproxy.Master.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.haproxy.Master.WaitNewWorker(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	a.waitSlot(target.endpoint(), runtime.StateDrain, -1)

	// Undrain through node B's API: ready on both.
	var res hapi.OverrideResult
	if code := post(t, b, token, "/v1/backends/be_web/servers/"+target.name+"/undrain", "", &res); code != 200 || !res.Applied || res.State != "ready" {
		t.Fatalf("undrain on node B: %d %+v", code, res)
	}
	if s, _ := b.slotOf(target.endpoint()); s.State() != runtime.StateReady {
		t.Fatalf("node B: %s is %s right after undrain returned", s.Name, s.State())
	}
	a.waitSlot(target.endpoint(), runtime.StateReady, -1)

	// Maint by slot name through node B, with a reason: node A shows who and why.
	other := backends[0]
	if other == target {
		other = backends[1]
	}
	slotB, _ := b.slotOf(other.endpoint())
	if code := post(t, b, token, "/v1/backends/be_web/servers/"+slotB.Name+"/maint", `{"reason":"disk","by":"ops-bob"}`, &res); code != 200 || res.ServiceID != other.name {
		t.Fatalf("maint on node B: %d %+v", code, res)
	}
	f.waitAll(other.endpoint(), runtime.StateMaint)
	var found bool
	for _, s := range a.backendView().Slots {
		if s.ServiceID == other.name && s.Override != nil && s.Override.State == "maint" && s.Override.Reason == "disk" && s.Override.By == "ops-bob" {
			found = true
		}
	}
	if !found {
		t.Fatalf("node A's status lacks the maint: %+v", a.backendView().Slots)
	}
	out, code = hapctlEnv(t, env, "undrain", "be_web", other.name)
	if code != 0 {
		t.Fatalf("undrain by service ID: exit %d\n%s", code, out)
	}
	f.waitAll(other.endpoint(), runtime.StateReady)

	// Mistakes: exit 1 with a message, nothing written.
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"drain", "be_web", "srv99"}, env, "backend be_web has no server srv99"},
		{[]string{"drain", "be_nope", "srv1"}, env, `no managed backend "be_nope"`},
		{[]string{"drain", "be_web", "10.9.9.9:80"}, env, "no passing instance at 10.9.9.9:80"},
		{[]string{"drain", "be_web", "srv4"}, env, "server srv4 of be_web is free: nothing to drain"},
		{[]string{"undrain", "be_web", "srv1"}, env, "has no drain or maint to lift"},
		{[]string{"drain", "be_web", "srv1"}, []string{"HAPCTL_ADDR=" + a.apiAddr}, "needs a token"},
		{[]string{"drain", "be_web", "srv1"}, []string{"HAPCTL_ADDR=" + a.apiAddr, "HAPCTL_TOKEN=nope"}, "wrong token"},
	} {
		out, code := hapctlEnv(t, tc.env, tc.args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("hapctl %s: exit %d, want 1 with %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
	if keys := f.drainKeys(t); len(keys) != 0 {
		t.Fatalf("drain keys left in consul: %v", keys)
	}
	loadA.finish()
	loadB.finish()
	for _, l := range []*load{loadA, loadB} {
		if l.failed.Load() != 0 {
			t.Fatalf("%d of %d requests failed: %v", l.failed.Load(), l.sent.Load(), l.errors)
		}
	}
	t.Logf("load: node A %d, node B %d requests, 0 failed", loadA.sent.Load(), loadB.sent.Load())

	// Consul down: the drain fails with a message and nothing changes.
	f.consul.Stop()
	out, code = hapctlEnv(t, env, "drain", "be_web", target.endpoint())
	if code != 1 || !strings.Contains(out, "was not stored, nothing changed") {
		t.Fatalf("drain with consul down: exit %d\n%s", code, out)
	}
	if s, _ := a.slotOf(target.endpoint()); s.State() != runtime.StateReady {
		t.Fatalf("after a failed drain: %s is %s", s.Name, s.State())
	}
}

// TestRemovalGrace deregisters an instance that serves a long request: its
// slot drains, the request completes, and the slot goes to maint once HAProxy
// counts no session on it, long before removal_grace is up.
func TestRemovalGrace(t *testing.T) {
	b, backends := startServing(t, bedOptions{minSlots: 4, removalGrace: "1m"}, 2)
	l := startLoad(t, b.frontend, 2, 5*time.Millisecond)
	leaving, slowDone := startSlow(t, b.frontend, backends)
	b.consul.Deregister(leaving.name)
	b.waitSlot(leaving.endpoint(), runtime.StateDrain, -1)
	var leavingSlot hapi.Slot
	for _, s := range b.backendView().Slots {
		if s.Address+":"+fmt.Sprint(s.Port) == leaving.endpoint() {
			leavingSlot = s
		}
	}
	if !leavingSlot.Leaving || leavingSlot.ServiceID != "" {
		t.Fatalf("status of the leaving slot: %+v", leavingSlot)
	}
	served := leaving.requests.Load()
	l.waitMore(t, 100)
	if s, _ := b.slotOf(leaving.endpoint()); s.State() != runtime.StateDrain {
		t.Fatalf("with a session open the slot is %s, want drain", s.State())
	}
	if n := leaving.requests.Load() - served; n != 0 {
		t.Fatalf("the leaving server got %d new requests", n)
	}
	close(leaving.release)
	if got := <-slowDone; got != "200 "+leaving.name {
		t.Fatalf("long request: %s", got)
	}
	b.waitSlot(leaving.endpoint(), runtime.StateMaint, -1)
	l.finish()
	if l.failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed: %v", l.failed.Load(), l.sent.Load(), l.errors)
	}
}

// startSlow sends a request for /slow through a frontend and returns the
// backend holding it and a channel with "status body" once it completes
// (after the backend's release is closed).
func startSlow(t *testing.T, frontend string, backends []*backend) (*backend, <-chan string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 25 * time.Second}).Get(frontend + "slow")
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()
	var holder *backend
	testbed.Eventually(t, 10*time.Second, "the long request reaches a backend", func() error {
		for _, be := range backends {
			if be.slow.Load() > 0 {
				holder = be
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	return holder, done
}
