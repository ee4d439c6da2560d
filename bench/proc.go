package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hapctl/hapctl/internal/testbed"
)

// hapctlDaemon is one `hapctl daemon` the bench started.
type hapctlDaemon struct {
	proc    *testbed.Process
	apiAddr string
}

// buildHapctl builds cmd/hapctl into a temporary directory, unless bin is
// given.
func buildHapctl(e *env, bin string) string {
	if bin != "" {
		return bin
	}
	out := filepath.Join(e.TempDir(), "hapctl")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/hapctl")
	if b, err := cmd.CombinedOutput(); err != nil {
		e.Fatalf("go build ./cmd/hapctl (run the bench from the repository root): %v\n%s", err, b)
	}
	return out
}

// hapctlConfig is a hapctl config for HAProxy h, Consul at consulAddr and
// the admin API on apiAddr, managing backends (YAML list items).
func hapctlConfig(e *env, h *testbed.HAProxy, consulAddr, apiAddr, backends string) string {
	return fmt.Sprintf(`consul:
  address: %s
haproxy:
  config_file: %s
  runtime_socket: %s
  master_socket: %s
  state_file: %s
  binary: %s
api:
  listen: %s
backends:
%s`, consulAddr, h.ConfigPath, h.AdminSock, h.MasterSock, h.StateFile, testbed.HAProxyBin(e), apiAddr, backends)
}

// startHapctl writes cfg and starts the daemon on it; it does not wait.
func startHapctl(e *env, bin, dir, cfg, apiAddr string) *hapctlDaemon {
	path := filepath.Join(dir, "hapctl.yaml")
	testbed.WriteFile(e, path, cfg)
	return &hapctlDaemon{
		proc:    testbed.StartProcess(e, "hapctl", bin, "daemon", "--config", path, "--log-level", "warn"),
		apiAddr: apiAddr,
	}
}

// ready is nil once /readyz answers 200.
func (d *hapctlDaemon) ready() error {
	if d.proc.Exited() {
		return fmt.Errorf("hapctl exited:\n%s", d.proc.Output())
	}
	resp, err := http.Get("http://" + d.apiAddr + "/readyz")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// metric sums the samples of metric family name on /metrics (every label
// set).
func (d *hapctlDaemon) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + d.apiAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

// cpuTime is the CPU time pid's threads have used, in nanoseconds, from
// /proc/<pid>/task/*/schedstat (the tick-based /proc/<pid>/stat counts in
// 10 ms steps, too coarse for one change).
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// memory returns pid's resident set size now and at its peak, in MiB.
func memory(pid int) (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}
