package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// Fault tests: hapctl keeps HAProxy serving through Consul, HAProxy and
// hapctl failures, and through hostile input (issue 5).

// serving starts a bed with n backends registered as web-1..web-n, hapctl
// ready with every one of them in service, and keep-alive load on the
// frontend.
func serving(t *testing.T, opts bedOptions, n int) (*bed, []*backend, *load) {
	t.Helper()
	b, backends := startServing(t, opts, n)
	l := startLoad(t, b.frontend, 4, 10*time.Millisecond)
	l.waitMore(t, 50)
	return b, backends, l
}

// startServing starts a bed with n backends registered as web-1..web-n
// and hapctl ready with every one of them in service.
func startServing(t *testing.T, opts bedOptions, n int) (*bed, []*backend) {
	t.Helper()
	b := newBed(t, opts)
	var backends []*backend
	for i := 1; i <= n; i++ {
		be := startBackend(t, fmt.Sprintf("web-%d", i))
		b.register(be.name, be, 1)
		backends = append(backends, be)
	}
	b.startHapctl()
	for _, be := range backends {
		b.waitSlot(be.endpoint(), runtime.StateReady, -1)
	}
	return b, backends
}

// noFailures fails the test when the load saw a failed request.
func (l *load) noFailures(t *testing.T) {
	t.Helper()
	l.finish()
	if n := l.failed.Load(); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("%d of %d requests failed: %v", n, l.sent.Load(), l.errors)
	}
	t.Logf("%d requests, 0 failed, slowest %v", l.sent.Load(), time.Duration(l.slowest.Load()).Round(time.Millisecond))
}

// slotWatch samples be_web's slots until stopped and remembers every
// distinct picture it saw.
type slotWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []string
}

func (b *bed) watchSlots() *slotWatch {
	w := &slotWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if servers, err := b.haproxy.TryServers("be_web"); err == nil {
				w.mu.Lock()
				if p := strings.Join(picture(servers), " "); len(w.seen) == 0 || w.seen[len(w.seen)-1] != p {
					w.seen = append(w.seen, p)
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// pictures stops the watch and returns what it saw.
func (w *slotWatch) pictures() []string {
	close(w.stop)
	<-w.done
	return w.seen
}

// readyzSays waits until /readyz is 503 and names want.
func (b *bed) readyzSays(want string, within time.Duration) {
	b.t.Helper()
	testbed.Eventually(b.t, within, "readyz says "+want, func() error {
		if err := b.ready(); err == nil || !strings.Contains(err.Error(), want) {
			return errors.New("readyz: " + errString(err))
		}
		return nil
	})
}

// waitReady waits until /readyz is 200 and returns how long that took.
func (b *bed) waitReady(within time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	last, shown := "", 0
	testbed.Eventually(b.t, within, "hapctl ready", func() error {
		err := b.ready()
		if err != nil && err.Error() != last && shown < 3 {
			last, shown = err.Error(), shown+1
			b.t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), last)
		}
		return err
	})
	return time.Since(start)
}

// waitOut waits until no slot in service has endpoint.
func (b *bed) waitOut(endpoint string) {
	b.t.Helper()
	testbed.Eventually(b.t, 10*time.Second, endpoint+" out of service", func() error {
		if s, ok := b.slotOf(endpoint); ok && s.State() != runtime.StateMaint {
			return fmt.Errorf("%s is %s", s.Name, s.State())
		}
		return nil
	})
}

// waitSlots waits until be_web's slots are want again after a fault, and
// logs how long that took.
func (b *bed) waitSlots(want []string, after string) {
	b.t.Helper()
	b.t.Logf("slots restored %v after %s", b.pollSlots(want, time.Now()).Round(time.Millisecond), after)
}

// holdFor watches HAProxy for d while a fault lasts and fails if be_web's
// slots change from want. It is the fault's duration, not a wait for a
// condition.
func (b *bed) holdFor(d time.Duration, want []string) {
	b.t.Helper()
	end := time.After(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if got := b.slots(); !slices.Equal(got, want) {
			b.t.Fatalf("haproxy changed during the fault:\n got  %v\n want %v", got, want)
		}
		select {
		case <-end:
			return
		case <-tick.C:
		}
	}
}

func TestConsulOutage(t *testing.T) {
	b, backends, l := serving(t, bedOptions{minSlots: 4, consulServer: true}, 3)
	want := b.slots()
	okCmds := b.metric(`hapctl_runtime_commands_total{result="ok"}`)

	// Stopped: every query fails at once.
	errs := b.metric("hapctl_consul_errors_total")
	b.consul.Stop()
	b.readyzSays("consul query for be_web failed", 5*time.Second)
	b.holdFor(10*time.Second, want)
	// With a 50/s rate limit and no backoff, 10 s would be ~500 calls per
	// watch; backoff (0.5-1 s) keeps the two watches and the probe near 45.
	storm := b.metric("hapctl_consul_errors_total") - errs
	t.Logf("consul stopped 10s: %.0f failed consul calls", storm)
	if storm > 100 {
		t.Fatalf("%.0f failed consul calls in 10s: no backoff", storm)
	}
	if got := b.metric(`hapctl_runtime_commands_total{result="ok"}`); got != okCmds {
		t.Fatalf("%.0f runtime commands sent while consul was down", got-okCmds)
	}
	b.consul.Start() // same data directory: the instances are still there
	answered := time.Now()
	// A restarted agent restores TTL checks as critical: their owners
	// heartbeat again, as real ones do. Until then the empty guard holds.
	for _, be := range backends {
		b.consul.SetCheck(be.name, api.HealthPassing)
	}
	t.Logf("ready %v after consul answered again", b.waitReady(10*time.Second).Round(time.Millisecond))
	fresh := startBackend(t, "web-4")
	b.register(fresh.name, fresh, 1)
	b.waitSlot(fresh.endpoint(), runtime.StateReady, -1)
	t.Logf("an instance registered after the restart served %v after consul answered", time.Since(answered).Round(time.Millisecond))

	// Hung (SIGSTOP): connections stay open and nothing answers; only the
	// agent probe can tell.
	want = b.slots()
	b.consul.Pause()
	b.readyzSays("consul agent does not answer", 15*time.Second)
	b.holdFor(3*time.Second, want)
	b.consul.Resume()
	t.Logf("ready %v after consul resumed", b.waitReady(15*time.Second).Round(time.Millisecond))
	b.consul.Deregister(backends[0].name)
	b.waitSlot(backends[0].endpoint(), runtime.StateMaint, -1)

	l.noFailures(t)
}

func TestConsulIndexReset(t *testing.T) {
	b, backends, l := serving(t, bedOptions{minSlots: 4}, 3)
	// Push the service's index up, so that the restarted agent's is lower:
	// an instance that never passes changes its check 30 times.
	filler := startBackend(t, "filler")
	b.consul.Register(&api.AgentServiceRegistration{ID: "filler", Name: "web", Address: filler.host, Port: filler.port}, api.HealthCritical)
	for i := range 30 {
		b.consul.SetCheck("filler", []string{api.HealthWarning, api.HealthCritical}[i%2])
	}
	_, meta, err := b.consul.Client.Health().Service("web", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := meta.LastIndex
	want := b.slots()

	// The dev agent comes back empty: Consul "lost its state". The empty
	// guard keeps the last set and says so.
	b.consul.Stop()
	b.consul.Start()
	b.readyzSays("empty guard holds be_web", 10*time.Second)
	if v := b.metric(`hapctl_empty_guard{backend="be_web"}`); v != 1 {
		t.Fatalf("hapctl_empty_guard = %v", v)
	}
	if !strings.Contains(b.hapctl.Output(), "keeping the last set in HAProxy (empty_guard)") {
		t.Fatal("the empty guard was not logged")
	}
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("haproxy changed under the empty guard:\n got  %v\n want %v", got, want)
	}

	// Registered again, two of three and a new one: the watches converge
	// although the index went backwards.
	b.register(backends[0].name, backends[0], 1)
	b.register(backends[1].name, backends[1], 1)
	fresh := startBackend(t, "web-4")
	b.register(fresh.name, fresh, 1)
	_, meta, err = b.consul.Client.Health().Service("web", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta.LastIndex >= before {
		t.Fatalf("index %d after the restart is not below %d: no reset to test", meta.LastIndex, before)
	}
	b.waitSlot(fresh.endpoint(), runtime.StateReady, -1)
	b.waitOut(backends[2].endpoint()) // its slot may go to web-4
	for _, be := range backends[:2] {
		b.waitSlot(be.endpoint(), runtime.StateReady, -1)
	}
	b.waitReady(10 * time.Second)
	if v := b.metric(`hapctl_empty_guard{backend="be_web"}`); v != 0 {
		t.Fatalf("hapctl_empty_guard = %v after instances came back", v)
	}
	// A later change still arrives: no watch is stuck on the old index.
	b.consul.Deregister(backends[0].name)
	b.waitSlot(backends[0].endpoint(), runtime.StateMaint, -1)
	l.noFailures(t)
}

func TestEmptyGuard(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		b, backends, l := serving(t, bedOptions{minSlots: 8}, 2)
		// A partial drop applies normally.
		b.consul.Deregister(backends[0].name)
		b.waitSlot(backends[0].endpoint(), runtime.StateMaint, -1)
		// Three more instances on one external node, which then leaves the
		// catalog at once: together with web-2's check going critical,
		// Consul reports no passing instance.
		ext := []*backend{startBackend(t, "ext-1"), startBackend(t, "ext-2"), startBackend(t, "ext-3")}
		for i, be := range ext {
			h := hostile{id: be.name, addr: be.host, nodeAddr: "127.0.0.1", port: be.port}
			if err := h.register(t, b.consul.Client, 100+i); err != nil {
				t.Fatal(err)
			}
			b.waitSlot(be.endpoint(), runtime.StateReady, -1)
		}
		b.consul.SetCheck(backends[1].name, api.HealthCritical)
		b.waitSlot(backends[1].endpoint(), runtime.StateMaint, -1)
		want := b.slots()
		txn := api.TxnOps{}
		for i := range ext {
			txn = append(txn, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: fmt.Sprintf("ext-%d", 100+i)}}})
		}
		if ok, resp, _, err := b.consul.Client.Txn().Txn(txn, nil); err != nil || !ok {
			t.Fatalf("txn: %v %+v", err, resp)
		}
		b.readyzSays("empty guard holds be_web", 10*time.Second)
		if v := b.metric(`hapctl_empty_guard{backend="be_web"}`); v != 1 {
			t.Fatalf("hapctl_empty_guard = %v", v)
		}
		if got := b.slots(); !slices.Equal(got, want) {
			t.Fatalf("haproxy changed under the empty guard:\n got  %v\n want %v", got, want)
		}
		l.waitMore(t, 100)
		l.noFailures(t) // the kept servers still serve
		// One instance back lifts the guard: the others go.
		b.consul.SetCheck(backends[1].name, api.HealthPassing)
		b.waitSlot(backends[1].endpoint(), runtime.StateReady, -1)
		for _, be := range ext {
			b.waitSlot(be.endpoint(), runtime.StateMaint, -1)
		}
		b.waitReady(10 * time.Second)
	})
	t.Run("off", func(t *testing.T) {
		b, backends := startServing(t, bedOptions{minSlots: 4, emptyGuard: "false"}, 2)
		for _, be := range backends {
			b.consul.Deregister(be.name)
		}
		for _, be := range backends {
			b.waitSlot(be.endpoint(), runtime.StateMaint, -1)
		}
		if v := b.metric(`hapctl_empty_guard{backend="be_web"}`); v != 0 {
			t.Fatalf("hapctl_empty_guard = %v with empty_guard: false", v)
		}
	})
}

func TestHAProxyRestartAndManualReload(t *testing.T) {
	b, backends, l := serving(t, bedOptions{minSlots: 4}, 3)
	// A drain makes the runtime state differ from the config file.
	if code := post(t, b, "", "/v1/backends/be_web/servers/"+backends[0].name+"/drain", `{"reason":"test"}`, nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	want := b.slots()

	// Reloaded by hand: the new worker starts from the file; hapctl sees the
	// new pid and puts its state back.
	pid := b.haproxy.Procs().Master.PID
	if _, err := b.haproxy.Master.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.waitSlots(want, "a manual reload")
	if b.haproxy.Procs().Master.PID != pid {
		t.Fatal("the master changed on a reload")
	}
	l.waitMore(t, 50)
	l.noFailures(t)

	// Restarted: a new master and worker with every slot from the file.
	b.haproxy.Stop()
	b.haproxy.Start("") // returns once the socket answers
	b.waitSlots(want, "a restart")
	b.waitReady(10 * time.Second)
	// Requests fail while HAProxy is down; none after.
	after := startLoad(t, b.frontend, 4, 10*time.Millisecond)
	after.waitMore(t, 100)
	after.noFailures(t)
	if v := b.metric(`hapctl_reloads_total{reason="grow"}`); v != 0 {
		t.Fatalf("hapctl reloaded %v times", v)
	}
}

// TestReloadBySomeoneElseStartsRight: an operator edits haproxy.cfg and
// reloads HAProxy (`systemctl reload haproxy`) long after hapctl bound its
// instances. The new worker must start with every slot as HAProxy ran it,
// not as it was at the last slot growth: hapctl keeps the slot lines and
// the server-state file in step with every change it applies. hapctl is
// stopped before the reload, so nothing but the files can put things right,
// and new connections, which go to the new worker at once, must not fail.
func TestReloadBySomeoneElseStartsRight(t *testing.T) {
	b := newBed(t, bedOptions{minSlots: 4})
	b.startHapctl()
	var backends []*backend
	for i := 1; i <= 3; i++ { // registered after the slots were added
		be := startBackend(t, fmt.Sprintf("web-%d", i))
		b.register(be.name, be, 1)
		b.waitSlot(be.endpoint(), runtime.StateReady, 1)
		backends = append(backends, be)
	}
	b.waitFilesCarry(backends)
	// Runtime-only changes after that: no slot is added or removed for them.
	if code := post(t, b, "", "/v1/backends/be_web/servers/web-2/drain", `{"reason":"test"}`, nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	b.register("web-3", backends[2], 7)
	b.waitSlot(backends[2].endpoint(), runtime.StateReady, 7)
	want := b.waitFilesCarry(backends)
	b.stopHapctl()

	l := startFreshLoad(t, b.frontend, 4, 5*time.Millisecond)
	l.waitMore(t, 50)
	if _, err := b.haproxy.Master.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("the new worker started with\n %v\nnot\n %v", got, want)
	}
	l.waitMore(t, 100)
	l.noFailures(t)
	if n := backends[1].requests.Load(); n != 0 {
		t.Fatalf("the drained web-2 got %d new connections", n)
	}
}

// waitFilesCarry waits until haproxy.cfg has a slot line for each backend
// and the server-state file holds be_web's slots as HAProxy runs them, and
// returns them.
func (b *bed) waitFilesCarry(backends []*backend) []string {
	b.t.Helper()
	want := b.slots()
	testbed.Eventually(b.t, 10*time.Second, "the slot lines and the state file carry the runtime state", func() error {
		cfg := fileContent(b.t, b.haproxy.ConfigPath)
		for _, be := range backends {
			if !strings.Contains(cfg, " "+be.endpoint()+" ") {
				return fmt.Errorf("no slot line for %s:\n%s", be.endpoint(), cfg)
			}
		}
		state, err := os.ReadFile(b.haproxy.StateFile)
		if err != nil {
			return err
		}
		saved, err := runtime.ParseServersState(string(state))
		if err != nil {
			return err
		}
		if got := picture(saved); !slices.Equal(got, want) {
			return fmt.Errorf("state file has %v, haproxy runs %v", got, want)
		}
		return nil
	})
	return want
}

// logEntry is one line of hapctl's JSON log.
type logEntry struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Server  string `json:"server"`
	Op      string `json:"op"`
}

func logEntries(t *testing.T, out string) []logEntry {
	t.Helper()
	var entries []logEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

func TestKillMidChurn(t *testing.T) {
	b, backends, l := serving(t, bedOptions{minSlots: 8}, 6)
	drained := backends[0]
	if code := post(t, b, "", "/v1/backends/be_web/servers/"+drained.name+"/drain", `{"reason":"kept"}`, nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	b.waitSlot(drained.endpoint(), runtime.StateDrain, -1)
	drainedSlot, _ := b.slotOf(drained.endpoint())
	watch := b.watchSlots()

	// Churn: the checks of web-2..web-6 flip, 20 changes a second.
	passing := map[string]bool{}
	for _, be := range backends[1:] {
		passing[be.name] = true
	}
	flip := func(i int) { // one of web-2..web-6 down, then up again, in turn
		be := backends[1+(i/2)%5]
		passing[be.name] = i%2 == 1
		status := api.HealthCritical
		if passing[be.name] {
			status = api.HealthPassing
		}
		b.consul.SetCheck(be.name, status)
	}
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for i := range 27 {
		<-pace.C
		flip(i)
		if i == 19 {
			b.hapctl.Kill() // SIGKILL, mid-churn; the churn goes on
		}
	}

	old := b.hapctl
	b.startHapctl()
	testbed.Eventually(t, 10*time.Second, "haproxy matches consul", func() error {
		for _, be := range backends[1:] {
			s, ok := b.slotOf(be.endpoint())
			switch {
			case passing[be.name] && (!ok || s.State() != runtime.StateReady):
				return fmt.Errorf("%s passes but is not ready: %v", be.name, b.slots())
			case !passing[be.name] && ok && s.State() != runtime.StateMaint:
				return fmt.Errorf("%s fails but is %s", be.name, s.State())
			}
		}
		return nil
	})
	for _, pic := range watch.pictures() {
		if !strings.Contains(pic, drainedSlot.Name+"="+drained.endpoint()+"/drain/") {
			t.Fatalf("the drained instance left drain: %s", pic)
		}
	}
	// The restarted hapctl sent each slot at most one command of each kind:
	// nothing it sent had to be undone.
	kinds := map[string]int{}
	var sent []string
	for _, e := range logEntries(t, b.hapctl.Output()) {
		if e.Message != "runtime command" {
			continue
		}
		sent = append(sent, e.Op)
		f := strings.Fields(e.Op) // set server be_web/srvN <kind> ...
		if len(f) >= 4 {
			kinds[f[2]+" "+f[3]]++
		}
		if e.Server == drainedSlot.Name {
			t.Errorf("command on the drained slot after the restart: %s", e.Op)
		}
	}
	for k, n := range kinds {
		if n > 1 {
			t.Fatalf("%d %q commands after the restart: %v", n, k, sent)
		}
	}
	t.Logf("after the restart: %d commands %v (killed hapctl had sent %d)", len(sent), sent, len(logEntries(t, old.Output())))
	l.noFailures(t)
}

// fakeSocket listens on path with one handler per connection until the test
// ends or close is called; accepted counts connections.
type fakeSocket struct {
	l        net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	conns    sync.Map
}

func serveFakeSocket(t *testing.T, path string, handle func(net.Conn)) *fakeSocket {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSocket{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.conns.Store(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { _ = c.Close(); s.conns.Delete(c) }()
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *fakeSocket) close() {
	_ = s.l.Close()
	s.conns.Range(func(c, _ any) bool { _ = c.(net.Conn).Close(); return true })
	s.wg.Wait()
}

func TestHungAndGarbageRuntimeSocket(t *testing.T) {
	b, backends, l := serving(t, bedOptions{minSlots: 4}, 2)
	want := b.slots()
	goroutines := b.metric("go_goroutines")
	real := b.haproxy.AdminSock + ".real"
	if err := os.Rename(b.haproxy.AdminSock, real); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = os.Remove(b.haproxy.AdminSock)
			_ = os.Rename(real, b.haproxy.AdminSock)
		}
	})
	// HAProxy itself goes on serving on its real socket, unseen by hapctl.
	rt := &runtime.Client{Socket: real, Timeout: 5 * time.Second}
	servers := func() []string {
		res, err := rt.Run(t.Context(), runtime.ShowAllServersState())
		if err != nil {
			t.Fatal(err)
		}
		all, err := runtime.ParseServersState(res[0].Answer)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range all {
			out = append(out, fmt.Sprintf("%s/%s=%s/%s/%d", s.Backend, s.Name, s.Endpoint(), s.State(), s.Weight))
		}
		return out
	}
	before := servers()

	fresh := startBackend(t, "web-3")
	for _, mode := range []struct {
		name   string
		handle func(net.Conn)
		reason string
	}{
		{"hung", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 4096))
			_, _ = c.Read(make([]byte, 1)) // until hapctl gives up and closes
		}, "haproxy does not answer"},
		{"garbage", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 4096))
			_, _ = c.Write([]byte("\x00\xff garbage\n\n> Pid: x\n> \x1b[2J"))
		}, "haproxy does not answer"},
	} {
		fake := serveFakeSocket(t, b.haproxy.AdminSock, mode.handle)
		b.readyzSays(mode.reason, 10*time.Second)
		if mode.name == "hung" {
			b.register(fresh.name, fresh, 1) // cannot be applied while the socket hangs
		}
		// The loop carries on: it keeps trying, the API answers.
		tries := fake.accepted.Load()
		testbed.Eventually(t, 15*time.Second, "hapctl keeps trying the socket", func() error {
			if n := fake.accepted.Load(); n < tries+5 {
				return fmt.Errorf("%d connections", n)
			}
			return nil
		})
		start := time.Now()
		if code := getStatus(t, "http://"+b.apiAddr+"/v1/backends/be_web"); code != 503 {
			t.Fatalf("%s socket: GET /v1/backends/be_web = %d, want 503", mode.name, code)
		}
		t.Logf("%s socket: GET /v1/backends/be_web answered 503 in %v; %d connections so far; %.0f goroutines (%.0f before)",
			mode.name, time.Since(start).Round(time.Millisecond), fake.accepted.Load(), b.metric("go_goroutines"), goroutines)
		if code := getStatus(t, "http://"+b.apiAddr+"/healthz"); code != 200 {
			t.Fatalf("healthz = %d", code)
		}
		if g := b.metric("go_goroutines"); g > goroutines+15 {
			t.Fatalf("%.0f goroutines, %.0f before the fault", g, goroutines)
		}
		fake.close()
		_ = os.Remove(b.haproxy.AdminSock)
	}
	if got := servers(); !slices.Equal(got, before) {
		t.Fatalf("haproxy changed while its socket was faulty:\n got  %v\n want %v", got, before)
	}

	if err := os.Rename(real, b.haproxy.AdminSock); err != nil {
		t.Fatal(err)
	}
	restored = true
	b.waitSlot(fresh.endpoint(), runtime.StateReady, -1)
	b.waitReady(10 * time.Second)
	for _, be := range backends {
		b.waitSlot(be.endpoint(), runtime.StateReady, -1)
	}
	if got := b.slots(); len(got) != len(want) {
		t.Fatalf("slots %v, before %v", got, want)
	}
	testbed.Eventually(t, 10*time.Second, "goroutines back to normal", func() error {
		if g := b.metric("go_goroutines"); g > goroutines+5 {
			return fmt.Errorf("%.0f goroutines, %.0f before the fault", g, goroutines)
		}
		return nil
	})
	l.noFailures(t)
}

// httpClient bounds every call of a fault test.
var httpClient = &http.Client{Timeout: 10 * time.Second}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
