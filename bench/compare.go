package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// compareOptions size the side-by-side run.
type compareOptions struct {
	trials    int           // propagation trials: each adds one instance, then removes it
	churn     time.Duration // churn under load
	rate      int           // churn changes per second
	burst     int           // instances registered at once in the middle of the churn
	burstHold time.Duration // how long the burst stays
	idle      time.Duration // quiet period in which Consul requests are counted
	conns     int           // keep-alive connections of the load
	interval  time.Duration // between two requests of one connection
}

// Pool layout: base instances stay registered throughout, so that no
// change ever leaves the service empty.
const (
	baseInstances = 4
	trialIndex    = baseInstances
	churnFirst    = trialIndex + 1
	churnPool     = 8
	burstFirst    = churnFirst + churnPool
)

type compareResult struct {
	name        string
	add, remove []time.Duration
	latencies   []time.Duration // of the load's successful requests
	failed      int
	errs        map[string]int
	changes     int // Consul changes made during the churn
	reloads     int // HAProxy reloads during the churn
	burstWanted int
	burstServed int           // most burst instances HAProxy served at once
	burstAll    time.Duration // burst registered -> all of it served; 0 when never
	idleHTTP    float64       // Consul HTTP requests per minute while nothing changes
	idleDNS     float64       // Consul DNS queries per minute while nothing changes
}

// compare measures one system.
func compare(e *env, sys system, p *pool, o compareOptions) compareResult {
	res := compareResult{name: sys.name, burstWanted: o.burst, errs: map[string]int{}}
	w := newWorld(e, p)
	for i := range baseInstances {
		w.register(e, fmt.Sprintf("base-%d", i), i)
	}
	l := sys.start(e, w)
	h := l.h
	base := make([]string, baseInstances)
	for i := range base {
		base[i] = p.endpoint(i)
	}
	waitFor(e, 60*time.Second, sys.name+" serves the base instances", func() error {
		ss, err := h.TryServers("be_web")
		if err != nil {
			return err
		}
		if n := serving(ss, base); n != len(base) {
			return fmt.Errorf("%d of %d base instances serving", n, len(base))
		}
		return nil
	})
	logf("%s: serving; %d propagation trials", sys.name, o.trials)

	trial := []string{p.endpoint(trialIndex)}
	gap := func() {
		if sys.phase > 0 {
			time.Sleep(rand.N(sys.phase))
		}
	}
	for range o.trials {
		gap()
		sent := time.Now()
		w.register(e, "trial", trialIndex)
		res.add = append(res.add, pollUntil(e, h, "be_web", sent, func(ss []runtime.ServerState) bool { return serving(ss, trial) == 1 }))
		gap()
		sent = time.Now()
		w.consul.Deregister("trial")
		res.remove = append(res.remove, pollUntil(e, h, "be_web", sent, func(ss []runtime.ServerState) bool { return serving(ss, trial) == 0 }))
	}
	logf("%s: add p50 %s, remove p50 %s; counting Consul requests for %s", sys.name, ms(pctl(res.add, 0.5)), ms(pctl(res.remove, 0.5)), o.idle)

	http0, dns0 := w.http.Load(), w.dns.Load()
	time.Sleep(o.idle) // a quiet period is what is measured here
	res.idleHTTP = float64(w.http.Load()-http0) * float64(time.Minute) / float64(o.idle)
	res.idleDNS = float64(w.dns.Load()-dns0) * float64(time.Minute) / float64(o.idle)

	logf("%s: churn at %d changes/s for %s under load", sys.name, o.rate, o.churn)
	reloads0 := reloadCount(e, h)
	ld := startLoad(l.frontend, o.conns, o.interval)
	res.changes, res.burstServed, res.burstAll = churn(e, w, h, o)
	res.latencies, res.failed, res.errs = ld.finish()
	res.reloads = reloadCount(e, h) - reloads0
	logf("%s: %d requests, %d failed, %d reloads, burst %d of %d served", sys.name, len(res.latencies)+res.failed, res.failed, res.reloads, res.burstServed, o.burst)
	return res
}

// churn changes the service o.rate times a second for o.churn: instances
// from the churn pool come and go, keeping 2 to 5 of them registered, and
// halfway through o.burst instances are registered at once and stay for
// o.burstHold. It returns the changes made, the most burst instances
// served at once, and the time until all of them were (0: never).
func churn(e *env, w *world, h *testbed.HAProxy, o compareOptions) (changes, burstServed int, burstAll time.Duration) {
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	defer tick.Stop()
	start := time.Now()
	var active []int // churn pool indices registered, oldest first
	free := make([]int, churnPool)
	for i := range free {
		free[i] = churnFirst + i
	}
	id := func(i int) string { return fmt.Sprintf("churn-%d", i) }
	bursted := false
	for k := 0; time.Since(start) < o.churn; k++ {
		<-tick.C
		if !bursted && time.Since(start) >= o.churn/2 {
			bursted = true
			burstServed, burstAll = burst(e, w, h, o)
			changes += 2 * o.burst
			continue
		}
		if len(active) < 2 || (len(active) < 5 && k%3 != 2) {
			i := free[0]
			free = free[1:]
			w.register(e, id(i), i)
			active = append(active, i)
		} else {
			i := active[0]
			active = active[1:]
			w.consul.Deregister(id(i))
			free = append(free, i)
		}
		changes++
	}
	for _, i := range active {
		w.consul.Deregister(id(i))
		changes++
	}
	return changes, burstServed, burstAll
}

// burst registers o.burst instances at once, watches how many HAProxy
// serves for o.burstHold, and deregisters them.
func burst(e *env, w *world, h *testbed.HAProxy, o compareOptions) (most int, all time.Duration) {
	eps := make([]string, o.burst)
	sent := time.Now()
	for i := range eps {
		w.register(e, fmt.Sprintf("burst-%d", i), burstFirst+i)
		eps[i] = w.pool.endpoint(burstFirst + i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.burstHold)
	defer cancel()
	for ctx.Err() == nil && all == 0 {
		ss, err := h.TryServers("be_web")
		if err != nil {
			continue
		}
		n := serving(ss, eps)
		most = max(most, n)
		if n == len(eps) {
			all = time.Since(sent)
		}
	}
	<-ctx.Done()
	for i := range eps {
		w.consul.Deregister(fmt.Sprintf("burst-%d", i))
	}
	return most, all
}

// serving counts the endpoints HAProxy has a ready server for.
func serving(ss []runtime.ServerState, endpoints []string) int {
	n := 0
	for _, s := range ss {
		if s.State() == runtime.StateReady && slices.Contains(endpoints, s.Endpoint()) {
			n++
		}
	}
	return n
}

// reloadCount is how many reloads HAProxy's master has done. The master
// CLI does not answer while a reload re-executes it: retry.
func reloadCount(e *env, h *testbed.HAProxy) int {
	var procs runtime.Procs
	waitFor(e, 10*time.Second, "haproxy's master answers show proc", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		procs, err = h.Master.ShowProc(ctx)
		return err
	})
	return procs.Master.Reloads
}

// compareMarkdown renders the side-by-side tables.
func compareMarkdown(rs []compareResult, o compareOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Propagation: change sent to Consul → HAProxy's runtime state shows it (%d trials each way)\n\n", o.trials)
	b.WriteString("| system | add p50 | add p99 | remove p50 | remove p99 |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.name, ms(pctl(r.add, 0.5)), ms(pctl(r.add, 0.99)), ms(pctl(r.remove, 0.5)), ms(pctl(r.remove, 0.99)))
	}
	fmt.Fprintf(&b, "\n### Churn under keep-alive load: %d changes/s for %s, with a burst of %d instances held %s (%d connections, one request each per %s)\n\n",
		o.rate, o.churn, o.burst, o.burstHold, o.conns, o.interval)
	b.WriteString("| system | changes | requests | failed | latency p50 | p99 | max | reloads | burst served |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		burst := fmt.Sprintf("%d of %d", r.burstServed, r.burstWanted)
		if r.burstAll > 0 {
			burst = fmt.Sprintf("all %d after %s", r.burstWanted, ms(r.burstAll))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %s | %d | %s |\n", r.name, r.changes, len(r.latencies)+r.failed, r.failed,
			ms(pctl(r.latencies, 0.5)), ms(pctl(r.latencies, 0.99)), ms(pctl(r.latencies, 1)), r.reloads, burst)
	}
	fmt.Fprintf(&b, "\n### Consul requests while nothing changes (%s counted)\n\n", o.idle)
	b.WriteString("| system | HTTP requests per minute | DNS queries per minute |\n|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f |\n", r.name, r.idleHTTP, r.idleDNS)
	}
	var errs []string
	for _, r := range rs {
		for msg, n := range r.errs {
			errs = append(errs, fmt.Sprintf("- %s: %d × `%s`", r.name, n, msg))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		b.WriteString("\nFailed requests:\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}
