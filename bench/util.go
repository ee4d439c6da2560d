package main

import (
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// waitFor polls cond every 20 ms until it returns nil, failing after d, and
// returns the time it took.
func waitFor(e *env, d time.Duration, what string, cond func() error) time.Duration {
	start := time.Now()
	deadline := start.Add(d)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			e.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pollUntil reads the backend's servers state as fast as HAProxy answers
// until cond holds, and returns the time since sent. Errors (a reloading
// HAProxy) are retried until the deadline.
func pollUntil(e *env, h *testbed.HAProxy, backend string, sent time.Time, cond func([]runtime.ServerState) bool) time.Duration {
	return pollEvery(e, h, backend, sent, 0, cond)
}

// pollEvery is pollUntil pausing between reads: reading a 1000-server
// backend costs HAProxy milliseconds, which polling back to back would take
// from the very commands being measured.
func pollEvery(e *env, h *testbed.HAProxy, backend string, sent time.Time, pause time.Duration, cond func([]runtime.ServerState) bool) time.Duration {
	deadline := sent.Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ss, err := h.TryServers(backend)
		if err == nil && cond(ss) {
			return time.Since(sent)
		}
		last = err
		time.Sleep(pause)
	}
	e.Fatalf("%s: condition not met 30s after the change (last error: %v)", backend, last)
	return 0
}

// waitFileHas polls path until it contains text and returns how long after
// sent that was.
func waitFileHas(e *env, path, text string, sent time.Time) time.Duration {
	deadline := sent.Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return time.Since(sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.Fatalf("%s: no %q 30s after the change", path, text)
	return 0
}

// waitUnchanged polls path until it has not changed for quiet (at most a
// minute).
func waitUnchanged(e *env, path string, quiet time.Duration) {
	var last time.Time
	since := time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		fi, err := os.Stat(path)
		if err != nil {
			e.Fatal(err)
		}
		if !fi.ModTime().Equal(last) {
			last, since = fi.ModTime(), time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
	e.Fatalf("%s still changes after a minute", path)
}

// pctl is the p-quantile of d (nearest rank below).
func pctl(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// ms renders d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

// machine describes where the bench runs: CPU, cores, Go, HAProxy, Consul.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	hv := "haproxy ?"
	if out, err := exec.Command("haproxy", "-v").Output(); err == nil {
		hv = strings.Join(strings.Fields(strings.SplitN(string(out), "\n", 2)[0])[:3], " ")
	}
	return fmt.Sprintf("%s, %d cores, %s, %s, Consul %s (dev agent)", cpu, goruntime.NumCPU(), goruntime.Version(), hv, testbed.ConsulVersion)
}
