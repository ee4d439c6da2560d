// Command bench measures hapctl side by side with what people use today to
// keep HAProxy in sync with Consul — consul-template re-rendering haproxy.cfg
// and reloading, and HAProxy's own DNS SRV discovery — and hapctl alone at
// scale. Everything runs on loopback: a Consul dev agent, HAProxy in
// master-worker mode, HTTP backends, and the system under test. It prints
// Markdown tables and writes a PNG chart of propagation latency.
//
//	go run ./bench            # the full run (about 8 minutes)
//	go run ./bench --quick    # fewer trials, shorter phases (under 2 minutes)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "fewer trials and shorter phases (under 2 minutes)")
	only := flag.String("only", "all", "what to run: all, compare or scale")
	trials := flag.Int("scale-trials", 0, "one-change trials in the scale run (0: 50, or 20 with --quick)")
	hapctlBin := flag.String("hapctl", "", "hapctl binary (default: build ./cmd/hapctl)")
	ctBin := flag.String("consul-template", "", "consul-template binary (default: PATH, then the cache scripts/setup.sh --bench fills)")
	chart := flag.String("chart", "docs/bench-propagation.png", "where to write the propagation chart (PNG); empty: none")
	out := flag.String("out", ".bench/compare.md", "where to write the Markdown tables too; empty: stdout only")
	flag.Parse()

	e := &env{}
	// Ctrl-C or SIGTERM stops exactly what the bench started.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		logf("%s: stopping what the bench started", s)
		e.close()
		os.Exit(130)
	}()
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(fatal)
				if !ok {
					panic(r)
				}
				fmt.Fprintf(os.Stderr, "bench: FAILED: %s\n", f.msg)
				code = 1
			}
		}()
		defer e.close()
		start := time.Now()
		bin := buildHapctl(e, *hapctlBin)
		var report strings.Builder
		fmt.Fprintf(&report, "Run %s on %s.\n\n", time.Now().UTC().Format(time.RFC3339), machine())
		if *only == "all" || *only == "compare" {
			o := compareOptions{trials: 50, churn: 20 * time.Second, rate: 10, burst: 12, burstHold: 3 * time.Second,
				idle: 30 * time.Second, conns: 4, interval: 10 * time.Millisecond}
			if *quick {
				o.trials, o.churn, o.idle = 8, 6*time.Second, 6*time.Second
			}
			systems := []system{
				hapctlSystem(bin),
				consulTemplateSystem(consulTemplateBin(e, *ctBin)),
				dnsSystem("DNS SRV, 1 s timers", time.Second),
				dnsSystem("DNS SRV, 100 ms timers", 100*time.Millisecond),
			}
			p := newPool(e, burstFirst+o.burst)
			var results []compareResult
			var ss []series
			for _, sys := range systems {
				var r compareResult
				e.scope(func(e *env) { r = compare(e, sys, p, o) })
				results = append(results, r)
				ss = append(ss, series{name: sys.name, add: r.add, remove: r.remove})
			}
			report.WriteString(compareMarkdown(results, o) + "\n")
			if *chart != "" {
				if err := os.MkdirAll(filepath.Dir(*chart), 0o755); err != nil {
					e.Fatalf("chart: %v", err)
				}
				if err := writeChart(*chart, fmt.Sprintf("Consul change → HAProxy serves it (%d trials each)", o.trials), ss); err != nil {
					e.Fatalf("chart: %v", err)
				}
				logf("chart written to %s", *chart)
			}
		}
		if *only == "all" || *only == "scale" {
			o := scaleOptions{services: 500, small: 39, big: 1000, trials: 50, bulk: 10}
			if *quick {
				o = scaleOptions{services: 100, small: 39, big: 1000, trials: 20, bulk: 4}
			}
			if *trials > 0 {
				o.trials = *trials
			}
			var r scaleResult
			e.scope(func(e *env) { r = scale(e, bin, o) })
			report.WriteString(r.markdown())
		}
		fmt.Fprintf(&report, "\nWhole run: %s.\n", time.Since(start).Round(time.Second))
		fmt.Print(report.String())
		if *out != "" {
			if err := os.MkdirAll(filepath.Dir(*out), 0o755); err == nil {
				err = os.WriteFile(*out, []byte(report.String()), 0o644)
			}
			logf("tables written to %s", *out)
		}
	}()
	os.Exit(code)
}
