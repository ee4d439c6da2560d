package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
	"github.com/hapctl/hapctl/internal/testbed"
)

// scaleOptions size the scale run: services-1 small services of small
// instances each, and one big service of big instances (on one node, whose
// node check flips them all at once) plus one more on another node, so that
// the big service never drops to zero passing.
type scaleOptions struct {
	services, small, big int
	trials               int // one-change trials in the big service
	bulk                 int // node-check flips of the big service (each one `big` server changes)
}

type scaleResult struct {
	opts       scaleOptions
	instances  int
	servers    int // slot servers in HAProxy
	register   time.Duration
	firstReady time.Duration // hapctl started on a config without slots -> /readyz 200, every instance serving
	firstCPU   time.Duration
	restart    time.Duration // hapctl restarted, slots in place -> /readyz 200, every instance serving
	rss, peak  float64       // MiB, after the first sync
	idleCPU    time.Duration // per second, while nothing changes
	change     []time.Duration
	changeCPU  time.Duration // per change
	changeOwn  time.Duration // mean of hapctl_propagation_seconds: Consul's answer -> HAProxy acknowledged
	// persistCPU is one change on its own, until hapctl has also written it
	// into haproxy.cfg and the server-state file; persisted is how long
	// after the change the slot line was there.
	persistCPU, persisted time.Duration
	bulkTotal             []time.Duration
	bulkOwn               time.Duration
	bulkCPU               time.Duration // per flip
}

const (
	bigService = "svc000"
	bigNode    = "big-a"
	bigCheck   = "big-a-alive"
)

// scale runs the scale scenario: hapctl alone, against a dev agent whose
// per-client connection limit is raised (hapctl holds one blocking query
// per service, and the agent's default allows 200 connections per client).
func scale(e *env, hapctlBin string, o scaleOptions) scaleResult {
	res := scaleResult{opts: o}
	consul := testbed.StartConsulDev(e, "-hcl", "limits { http_max_conns_per_client = 4096 }")
	h := testbed.NewHAProxy(e)
	h.Quiet = true
	h.Start(h.Preamble())

	start := time.Now()
	res.instances = registerScale(e, consul.Client, o)
	res.register = time.Since(start)
	logf("scale: registered %d instances of %d services in %s", res.instances, o.services, res.register.Round(time.Millisecond))

	apiAddr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(e))
	var backends strings.Builder
	for s := range o.services {
		slots := o.small + o.small/4
		if s == 0 {
			slots = o.big + 1 + o.big/64
		}
		fmt.Fprintf(&backends, "  - {name: be_%s, service: %s, min_slots: %d, max_slots: %d}\n", svcName(s), svcName(s), slots, max(slots, 1024))
	}

	cfg := hapctlConfig(e, h, consul.Addr, apiAddr, backends.String())

	// First start: hapctl writes every backend's slot lines, reloads HAProxy
	// once, then syncs every instance.
	start = time.Now()
	d := startHapctl(e, hapctlBin, h.Dir, cfg, apiAddr)
	// /readyz says ready once every backend's first sync is acknowledged by
	// HAProxy; reading all 25k servers takes HAProxy tens of milliseconds,
	// so that is checked once ready, not polled.
	waitFor(e, 5*time.Minute, "hapctl ready", d.ready)
	res.firstReady = time.Since(start)
	var err error
	if res.servers, err = allServing(h, res.instances); err != nil {
		e.Fatalf("hapctl says ready after its first start, but %v", err)
	}
	res.firstCPU, _ = cpuTime(d.proc.Pid())
	res.rss, res.peak, _ = memory(d.proc.Pid())
	logf("scale: first start: ready with every instance serving in %s (%d slot servers), %.0f MiB RSS", res.firstReady.Round(time.Millisecond), res.servers, res.rss)

	// Idle CPU over a few seconds, once the first start's write of the
	// slot lines and the state file (a second after the last binding) is
	// done: idle means nothing left to do.
	waitUnchanged(e, h.StateFile, 2500*time.Millisecond)
	before, _ := cpuTime(d.proc.Pid())
	idle := 5 * time.Second
	time.Sleep(idle) // measuring a quiet period: nothing to poll for
	after, _ := cpuTime(d.proc.Pid())
	res.idleCPU = (after - before) * time.Second / idle

	// One change in the big service: move one instance to another port.
	pid := d.proc.Pid()
	// hapctl's own share is the mean of its propagation histogram over the
	// trials: /metrics is read only before and after, since reading it at
	// 500 backends costs more CPU than a change.
	own0 := histSum(e, d, "hapctl_propagation_seconds")
	for i := range o.trials {
		k := 1 + i%(o.big-1)
		port := 30000 + k
		if (i/(o.big-1))%2 == 0 {
			port += 1000
		}
		cpu0 := quietCPU(pid)
		sent := time.Now()
		txn(e, consul.Client, api.TxnOps{serviceOp(bigService, k, bigNode, "127.2.0.1", port)})
		want := netip.AddrPortFrom(netip.MustParseAddr("127.2.0.1"), uint16(port)).String()
		res.change = append(res.change, pollEvery(e, h, "be_"+bigService, sent, 2*time.Millisecond, func(ss []runtime.ServerState) bool {
			for _, s := range ss {
				if s.Endpoint() == want && s.State() == runtime.StateReady {
					return true
				}
			}
			return false
		}))
		res.changeCPU += quietCPU(pid) - cpu0
	}
	res.changeOwn = meanSince(e, d, "hapctl_propagation_seconds", own0)
	res.changeCPU /= time.Duration(max(o.trials, 1))
	logf("scale: one change in a %d-instance service: p50 %s, hapctl CPU %s per change", o.big+1, pctl(res.change, 0.5), res.changeCPU.Round(100*time.Microsecond))

	// One more change on its own, until it is in the files too: hapctl
	// writes the slot lines and the state file after changes, at most once
	// per 2 s, so a burst of changes shares one write but a lone change
	// pays for a whole one.
	cpu0 := quietCPU(pid)
	sent := time.Now()
	txn(e, consul.Client, api.TxnOps{serviceOp(bigService, 1, bigNode, "127.2.0.1", 32001)})
	res.persisted = waitFileHas(e, h.ConfigPath, " 127.2.0.1:32001 ", sent)
	res.persistCPU = quietCPU(pid) - cpu0
	logf("scale: a lone change is in haproxy.cfg after %s, hapctl CPU %s with the write", ms(res.persisted), ms(res.persistCPU))

	// Bulk: the big node's check flips, and all its instances leave or come
	// back at once.
	own0 = histSum(e, d, "hapctl_propagation_seconds")
	for i := range o.bulk {
		status, serving := api.HealthCritical, 1
		if i%2 == 1 {
			status, serving = api.HealthPassing, o.big+1
		}
		cpu0 := quietCPU(pid)
		sent := time.Now()
		txn(e, consul.Client, api.TxnOps{{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: bigNode, CheckID: bigCheck, Name: bigCheck, Status: status}}}})
		res.bulkTotal = append(res.bulkTotal, pollEvery(e, h, "be_"+bigService, sent, 2*time.Millisecond, func(ss []runtime.ServerState) bool {
			return countReady(ss) == serving
		}))
		res.bulkCPU += quietCPU(pid) - cpu0
	}
	res.bulkOwn = meanSince(e, d, "hapctl_propagation_seconds", own0)
	if o.bulk > 0 {
		res.bulkCPU /= time.Duration(o.bulk)
		logf("scale: %d server changes at once: applied %s after Consul's answer (mean), hapctl CPU %s per flip", o.big, ms(res.bulkOwn), ms(res.bulkCPU))
	}

	// Restart with the slots in place.
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		e.Fatal(err)
	}
	if _, done := d.proc.Wait(30 * time.Second); !done {
		e.Fatal("hapctl did not stop within 30s of SIGTERM")
	}
	start = time.Now()
	d = startHapctl(e, hapctlBin, h.Dir, cfg, apiAddr)
	waitFor(e, 5*time.Minute, "hapctl ready after a restart", d.ready)
	res.restart = time.Since(start)
	if _, err := allServing(h, res.instances); err != nil {
		e.Fatalf("hapctl says ready after a restart, but %v", err)
	}
	logf("scale: restart: ready with every instance serving in %s", res.restart.Round(time.Millisecond))
	return res
}

func svcName(s int) string { return fmt.Sprintf("svc%03d", s) }

// registerScale registers the scale run's nodes and instances through
// Consul's transaction API, four transactions at a time.
func registerScale(e *env, c *api.Client, o scaleOptions) int {
	const nodes = 40
	var ops api.TxnOps
	for n := range nodes {
		ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: fmt.Sprintf("n%02d", n), Address: fmt.Sprintf("127.1.0.%d", n+1)}}})
	}
	ops = append(ops,
		&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: bigNode, Address: "127.2.0.1"}}},
		&api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "big-b", Address: "127.2.0.2"}}},
		&api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: bigNode, CheckID: bigCheck, Name: bigCheck, Status: api.HealthPassing}}},
	)
	txn(e, c, ops)
	ops = ops[:0]
	count := 0
	for k := range o.big {
		ops = append(ops, serviceOp(bigService, k, bigNode, "127.2.0.1", 30000+k))
	}
	ops = append(ops, serviceOp(bigService, o.big, "big-b", "127.2.0.2", 30000))
	count += o.big + 1
	for s := 1; s < o.services; s++ {
		for k := range o.small {
			n := (s*o.small + k) % nodes
			ops = append(ops, serviceOp(svcName(s), k, fmt.Sprintf("n%02d", n), fmt.Sprintf("127.1.0.%d", n+1), 10000+(s*o.small+k)%50000))
		}
		count += o.small
	}
	var wg sync.WaitGroup
	batches := make(chan api.TxnOps)
	var errs []error
	var mu sync.Mutex
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := tryTxn(c, b); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for len(ops) > 0 {
		n := min(64, len(ops))
		batches <- ops[:n]
		ops = ops[n:]
	}
	close(batches)
	wg.Wait()
	if len(errs) > 0 {
		e.Fatalf("registering instances: %v", errs[0])
	}
	return count
}

func serviceOp(svc string, k int, node, addr string, port int) *api.TxnOp {
	return &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node,
		Service: api.AgentService{ID: fmt.Sprintf("%s-%d", svc, k), Service: svc, Address: addr, Port: port}}}
}

func txn(e *env, c *api.Client, ops api.TxnOps) {
	if err := tryTxn(c, ops); err != nil {
		e.Fatal(err)
	}
}

func tryTxn(c *api.Client, ops api.TxnOps) error {
	ok, resp, _, err := c.Txn().Txn(ops, nil)
	if err != nil {
		return fmt.Errorf("consul txn: %w", err)
	}
	if !ok {
		return fmt.Errorf("consul txn refused: %v", resp.Errors)
	}
	return nil
}

// allServing checks, in one read of every server (tens of milliseconds of
// HAProxy's time at 25k), that HAProxy runs want ready slot servers, and
// returns how many slot servers it has.
func allServing(h *testbed.HAProxy, want int) (slots int, err error) {
	ss, err := showAll(h)
	if err != nil {
		return 0, err
	}
	for _, s := range ss {
		if _, ok := slot.Index(s.Name); ok {
			slots++
		}
	}
	if ready := countReady(ss); ready != want {
		return slots, fmt.Errorf("%d of %d instances serving", ready, want)
	}
	return slots, nil
}

func showAll(h *testbed.HAProxy) ([]runtime.ServerState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := h.Runtime.Run(ctx, runtime.ShowAllServersState())
	if err != nil {
		return nil, err
	}
	return runtime.ParseServersState(res[0].Answer)
}

func countReady(ss []runtime.ServerState) int {
	n := 0
	for _, s := range ss {
		if _, ok := slot.Index(s.Name); ok && s.State() == runtime.StateReady {
			n++
		}
	}
	return n
}

// quietCPU waits until pid has used less than 0.2 ms of CPU in 10 ms (the
// work a change set off is done) and returns its CPU time then. The
// /metrics reads between trials are outside these windows.
func quietCPU(pid int) time.Duration {
	last, _ := cpuTime(pid)
	for range 200 {
		time.Sleep(10 * time.Millisecond)
		now, _ := cpuTime(pid)
		if now-last < 200*time.Microsecond {
			return now
		}
		last = now
	}
	return last
}

// histSum reads the _sum and _count of a histogram.
func histSum(e *env, d *hapctlDaemon, name string) [2]float64 {
	sum, err := d.metric(name + "_sum")
	if err != nil {
		e.Fatal(err)
	}
	count, err := d.metric(name + "_count")
	if err != nil {
		e.Fatal(err)
	}
	return [2]float64{sum, count}
}

// meanSince returns the mean of the histogram's observations since before.
func meanSince(e *env, d *hapctlDaemon, name string, before [2]float64) time.Duration {
	now := histSum(e, d, name)
	if now[1] <= before[1] {
		e.Fatalf("%s: no observation", name)
	}
	return time.Duration((now[0] - before[0]) / (now[1] - before[1]) * float64(time.Second))
}

func (r scaleResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Scale: %d services, %d instances (hapctl alone)\n\n", r.opts.services, r.instances)
	fmt.Fprintf(&b, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| instances registered (Consul txn API) | %d in %s |\n", r.instances, ms(r.register))
	fmt.Fprintf(&b, "| first start: hapctl started on a config without slots → /readyz 200, every instance serving (%d slot servers written, one reload) | %s |\n", r.servers, ms(r.firstReady))
	fmt.Fprintf(&b, "| hapctl CPU during the first start | %s |\n", ms(r.firstCPU))
	fmt.Fprintf(&b, "| restart with slots in place → /readyz 200, every instance serving | %s |\n", ms(r.restart))
	fmt.Fprintf(&b, "| hapctl RSS after the first sync (peak) | %.0f MiB (%.0f MiB) |\n", r.rss, r.peak)
	fmt.Fprintf(&b, "| hapctl CPU while idle | %s per second |\n", ms(r.idleCPU))
	fmt.Fprintf(&b, "| one change in the %d-instance service: sent → HAProxy shows it, p50 / p99 (%d trials) | %s / %s |\n", r.opts.big+1, len(r.change), ms(pctl(r.change, 0.5)), ms(pctl(r.change, 0.99)))
	fmt.Fprintf(&b, "| … of which hapctl: Consul's answer → HAProxy acknowledged (mean) | %s |\n", ms(r.changeOwn))
	fmt.Fprintf(&b, "| hapctl CPU per change | %s |\n", ms(r.changeCPU))
	fmt.Fprintf(&b, "| a lone change, also written into haproxy.cfg and the server-state file: written after / hapctl CPU with the write | %s / %s |\n", ms(r.persisted), ms(r.persistCPU))
	if len(r.bulkTotal) > 0 {
		fmt.Fprintf(&b, "| %d server changes at once (node check flips): sent → HAProxy shows all, p50 / max (%d trials) | %s / %s |\n", r.opts.big, len(r.bulkTotal), ms(pctl(r.bulkTotal, 0.5)), ms(pctl(r.bulkTotal, 1)))
		fmt.Fprintf(&b, "| … of which hapctl: Consul's answer → HAProxy acknowledged all (mean) | %s |\n", ms(r.bulkOwn))
		fmt.Fprintf(&b, "| hapctl CPU per %d changes | %s |\n", r.opts.big, ms(r.bulkCPU))
	}
	return b.String()
}
