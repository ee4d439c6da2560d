package testbed

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hapctl/hapctl/internal/runtime"
)

// HAProxy is a master-worker HAProxy owned by one test.
type HAProxy struct {
	Dir        string
	ConfigPath string
	AdminSock  string
	MasterSock string
	StateFile  string
	Runtime    *runtime.Client
	Master     *runtime.Master
	Proc       *Process
	// Quiet starts HAProxy with -q: no warning per server state change on
	// stderr (1000 lines for a 1000-server batch), for benchmarks.
	Quiet bool
	t     TB
}

// NewHAProxy prepares the paths of an HAProxy; Start runs it.
func NewHAProxy(t TB) *HAProxy {
	t.Helper()
	dir := ShortDir(t)
	h := &HAProxy{
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "haproxy.cfg"),
		AdminSock:  filepath.Join(dir, "admin.sock"),
		MasterSock: filepath.Join(dir, "master.sock"),
		StateFile:  filepath.Join(dir, "server-state"),
		t:          t,
	}
	h.Runtime = &runtime.Client{Socket: h.AdminSock, Timeout: 5 * time.Second}
	h.Master = &runtime.Master{Socket: h.MasterSock, Timeout: 5 * time.Second}
	return h
}

// Preamble is a global and defaults section wired to this HAProxy's paths,
// as the example config in haproxy/ has them.
func (h *HAProxy) Preamble() string {
	return fmt.Sprintf(`global
    stats socket %s mode 600 level admin expose-fd listeners
    stats timeout 1m
    server-state-file %s
    maxconn 4000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option idle-close-on-response
    load-server-state-from-file global
`, h.AdminSock, h.StateFile)
}

// Start writes cfg (unless empty: then the file must exist) and starts HAProxy
// in master-worker mode, waiting until the worker answers on the stats socket.
func (h *HAProxy) Start(cfg string) {
	h.t.Helper()
	if cfg != "" {
		WriteFile(h.t, h.ConfigPath, cfg)
	}
	args := []string{"-W", "-S", h.MasterSock, "-f", h.ConfigPath}
	if h.Quiet {
		args = append(args, "-q")
	}
	h.Proc = StartProcess(h.t, "haproxy", HAProxyBin(h.t), args...)
	Eventually(h.t, 10*time.Second, "haproxy answers on its stats socket and master CLI", func() error {
		if h.Proc.Exited() {
			h.t.Fatalf("haproxy exited at start:\n%s", h.Proc.Output())
		}
		if _, err := h.Info(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := h.Master.ShowProc(ctx)
		return err
	})
}

// Stop stops HAProxy (master and workers).
func (h *HAProxy) Stop() { h.Proc.Stop() }

// Info runs `show info` on the stats socket.
func (h *HAProxy) Info() (runtime.Info, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := h.Runtime.Run(ctx, runtime.ShowInfo())
	if err != nil {
		return runtime.Info{}, err
	}
	return runtime.ParseInfo(res[0].Answer)
}

// Servers returns `show servers state` of one backend, failing the test on error.
func (h *HAProxy) Servers(backend string) []runtime.ServerState {
	h.t.Helper()
	s, err := h.TryServers(backend)
	if err != nil {
		h.t.Fatalf("show servers state %s: %v", backend, err)
	}
	return s
}

// TryServers is Servers returning the error.
func (h *HAProxy) TryServers(backend string) ([]runtime.ServerState, error) {
	cmd, err := runtime.ShowServersState(backend)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := h.Runtime.Run(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return runtime.ParseServersState(res[0].Answer)
}

// Procs runs `show proc` on the master, failing the test on error.
func (h *HAProxy) Procs() runtime.Procs {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, err := h.Master.ShowProc(ctx)
	if err != nil {
		h.t.Fatalf("show proc: %v", err)
	}
	return p
}
