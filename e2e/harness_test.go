package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

// bed is one Consul, one HAProxy and one hapctl.
type bed struct {
	t        testing.TB
	consul   *testbed.Consul
	haproxy  *testbed.HAProxy
	frontend string // http://127.0.0.1:port/
	apiAddr  string
	cfgPath  string
	hapctl   *testbed.Process
}

type bedOptions struct {
	minSlots      int
	serverOptions string
	growth        string // "" for the default (dynamic)
	shrinkAfter   string // "" for the default
	reloadMin     string // haproxy.reload_min_interval; "" for the default
	removalGrace  string // "" for the default (0s)
	token         string // api.token
	emptyGuard    string // "" for the default (true)
	// consul is shared by the beds of a fleet; nil: the bed starts its own,
	// a dev agent, or a server keeping its state when consulServer is set.
	consul       *testbed.Consul
	consulServer bool
	consulToken  string // consul.token; "" for none
	// userServers are the user's own server lines in be_web, e.g. the
	// ones consul-template rendered.
	userServers string
}

// newBed starts Consul and HAProxy with a user config holding a frontend and
// an empty backend be_web; hapctl is started by startHapctl.
func newBed(t testing.TB, opts bedOptions) *bed {
	t.Helper()
	b := &bed{t: t, consul: opts.consul, haproxy: testbed.NewHAProxy(t)}
	switch {
	case b.consul != nil:
	case opts.consulServer:
		b.consul = testbed.StartConsulServer(t)
	default:
		b.consul = testbed.StartConsul(t)
	}
	port := testbed.FreePort(t)
	b.frontend = fmt.Sprintf("http://127.0.0.1:%d/", port)
	b.haproxy.Start(b.haproxy.Preamble() + fmt.Sprintf(`
frontend fe
    bind 127.0.0.1:%d
    default_backend be_web

backend be_web
    balance roundrobin
    retries 3
    option redispatch
%s`, port, opts.userServers))
	b.apiAddr = fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t))
	b.cfgPath = filepath.Join(b.haproxy.Dir, "hapctl.yaml")
	testbed.WriteFile(t, b.cfgPath, fmt.Sprintf(`consul:
  address: %s
%shaproxy:
  config_file: %s
  runtime_socket: %s
  master_socket: %s
  state_file: %s
  binary: %s
%sapi:
  listen: %s
%sbackends:
  - name: be_web
    service: web
    min_slots: %d
    server_options: %q
%s`, b.consul.Addr, optional("  ", "token", opts.consulToken), b.haproxy.ConfigPath, b.haproxy.AdminSock, b.haproxy.MasterSock, b.haproxy.StateFile,
		testbed.HAProxyBin(t), optional("  ", "reload_min_interval", opts.reloadMin), b.apiAddr, optional("  ", "token", opts.token),
		opts.minSlots, opts.serverOptions,
		optional("    ", "growth", opts.growth)+optional("    ", "shrink_after", opts.shrinkAfter)+optional("    ", "removal_grace", opts.removalGrace)+
			optional("    ", "empty_guard", opts.emptyGuard)))
	return b
}

// optional renders `key: value` on its own line, or nothing for "".
func optional(indent, key, value string) string {
	if value == "" {
		return ""
	}
	return indent + key + ": " + value + "\n"
}

// startHapctl starts `hapctl daemon` and waits until /readyz says ready.
func (b *bed) startHapctl() {
	b.t.Helper()
	b.hapctl = testbed.StartProcess(b.t, "hapctl", hapctlBin, "daemon", "--config", b.cfgPath, "--log-level", "debug")
	testbed.Eventually(b.t, 20*time.Second, "hapctl is ready", func() error {
		if b.hapctl.Exited() {
			b.t.Fatalf("hapctl exited:\n%s", b.hapctl.Output())
		}
		return b.ready()
	})
}

func (b *bed) ready() error {
	resp, err := http.Get("http://" + b.apiAddr + "/readyz")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
	}
	return nil
}

// stopHapctl sends SIGTERM and waits for a clean exit.
func (b *bed) stopHapctl() {
	b.t.Helper()
	if err := b.hapctl.Signal(syscall.SIGTERM); err != nil {
		b.t.Fatal(err)
	}
	err, done := b.hapctl.Wait(10 * time.Second)
	if !done {
		b.t.Fatal("hapctl did not stop within 10s of SIGTERM")
	}
	if err != nil {
		b.t.Fatalf("hapctl exited with %v:\n%s", err, b.hapctl.Output())
	}
}

// metric reads one sample from hapctl's /metrics; series is the name with
// its labels as Prometheus prints them, like `x_total{result="ok"}`.
func (b *bed) metric(series string) float64 {
	b.t.Helper()
	resp, err := http.Get("http://" + b.apiAddr + "/metrics")
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				b.t.Fatal(err)
			}
			return v
		}
	}
	b.t.Fatalf("metric %s not found", series)
	return 0
}

// slots returns "srvN=addr:port/state/weight" for every slot of be_web.
func (b *bed) slots() []string {
	b.t.Helper()
	return picture(b.haproxy.Servers("be_web"))
}

// picture renders the slots among servers as "srvN=addr:port/state/weight".
func picture(servers []runtime.ServerState) []string {
	var out []string
	for _, s := range servers {
		if _, ok := slot.Index(s.Name); ok {
			out = append(out, fmt.Sprintf("%s=%s/%s/%d", s.Name, s.Endpoint(), s.State(), s.Weight))
		}
	}
	return out
}

// slotOf finds the slot (srvN, not a user's server line) whose endpoint
// is endpoint; false when none.
func (b *bed) slotOf(endpoint string) (runtime.ServerState, bool) {
	for _, s := range b.haproxy.Servers("be_web") {
		if _, ok := slot.Index(s.Name); ok && s.Endpoint() == endpoint {
			return s, true
		}
	}
	return runtime.ServerState{}, false
}

// waitSlot waits until the slot holding endpoint is in state with weight
// (weight < 0: any).
func (b *bed) waitSlot(endpoint string, state runtime.State, weight int) {
	b.t.Helper()
	testbed.Eventually(b.t, 10*time.Second, endpoint+" is "+state.String(), func() error {
		s, ok := b.slotOf(endpoint)
		switch {
		case !ok:
			return fmt.Errorf("no slot has %s: %v", endpoint, b.slots())
		case s.State() != state:
			return fmt.Errorf("%s is %s", s.Name, s.State())
		case weight >= 0 && s.Weight != weight:
			return fmt.Errorf("%s has weight %d", s.Name, s.Weight)
		}
		return nil
	})
}

// register registers backend be as instance id of service web.
func (b *bed) register(id string, be *backend, weight int) {
	b.t.Helper()
	reg := &api.AgentServiceRegistration{ID: id, Name: "web", Address: be.host, Port: be.port}
	if weight > 0 {
		reg.Weights = &api.AgentWeights{Passing: weight, Warning: 1}
	}
	b.consul.Register(reg, api.HealthPassing)
}

// backend is a small HTTP server that counts its requests. A request for
// /slow is held until release is closed.
type backend struct {
	name     string
	host     string
	port     int
	requests atomic.Int64
	slow     atomic.Int64 // /slow requests in flight
	release  chan struct{}
	srv      *http.Server
}

func (be *backend) endpoint() string { return net.JoinHostPort(be.host, strconv.Itoa(be.port)) }

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	return startBackendOn(t, name, "127.0.0.1")
}

// startBackendOn starts a backend listening on host (an IP literal).
func startBackendOn(t testing.TB, name, host string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	be := &backend{name: name, host: host, port: l.Addr().(*net.TCPAddr).Port, release: make(chan struct{})}
	be.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			be.slow.Add(1)
			defer be.slow.Add(-1)
			select {
			case <-be.release:
			case <-r.Context().Done():
				return
			}
		} else {
			be.requests.Add(1)
		}
		_, _ = io.WriteString(w, be.name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = be.srv.Serve(l) }()
	t.Cleanup(func() { _ = be.srv.Close() })
	return be
}

// load sends requests to the frontend over keep-alive connections from a
// few workers at a bounded rate, until stopped.
type load struct {
	sent, failed atomic.Int64
	slowest      atomic.Int64 // nanoseconds of the slowest request
	mu           sync.Mutex
	errors       []string
	stop         context.CancelFunc
	done         sync.WaitGroup
}

// startLoad sends GETs through url from workers keep-alive connections,
// one request per perWorker each, until the test ends or finish is called.
func startLoad(t testing.TB, url string, workers int, perWorker time.Duration) *load {
	t.Helper()
	return startLoadOn(t, url, workers, perWorker, &http.Transport{MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute})
}

// startFreshLoad is startLoad with a new connection for every request: it
// reaches a new HAProxy worker as soon as one listens.
func startFreshLoad(t testing.TB, url string, workers int, perWorker time.Duration) *load {
	t.Helper()
	return startLoadOn(t, url, workers, perWorker, &http.Transport{DisableKeepAlives: true})
}

func startLoadOn(t testing.TB, url string, workers int, perWorker time.Duration, tr *http.Transport) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for i := 0; i < workers; i++ {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			tick := time.NewTicker(perWorker)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				l.sent.Add(1)
				start := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if took := int64(time.Since(start)); took > l.slowest.Load() {
					l.slowest.Store(took) // racy max: good enough for a report
				}
				if err != nil && ctx.Err() == nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errors) < 10 {
						l.errors = append(l.errors, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					l.mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(func() { l.finish(); tr.CloseIdleConnections() })
	return l
}

// waitMore waits until n more requests were sent, so that every step of a
// scenario runs under traffic.
func (l *load) waitMore(t testing.TB, n int64) {
	t.Helper()
	target := l.sent.Load() + n
	testbed.Eventually(t, 30*time.Second, "load makes progress", func() error {
		if got := l.sent.Load(); got < target {
			return fmt.Errorf("%d of %d requests sent", got, target)
		}
		return nil
	})
}

func (l *load) finish() {
	l.stop()
	l.done.Wait()
}

// get sends one request through the frontend and returns the body.
func get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// fileContent reads a file or fails.
func fileContent(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
