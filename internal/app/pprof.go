package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"
)

// PprofEnv names the environment variable that, set to a loopback
// host:port, makes the daemon serve Go's profiler (/debug/pprof/) there:
// for measuring hapctl at scale, never on the admin API.
const PprofEnv = "HAPCTL_PPROF"

// servePprof serves the profiler on addr until ctx ends. Only a loopback
// address is accepted: profiles show internals and cost CPU.
func servePprof(ctx context.Context, addr string, log zerolog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", PprofEnv, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s=%q: only a loopback address (127.0.0.1:PORT or [::1]:PORT) is allowed", PprofEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", PprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(ln) }()
	log.Warn().Str("listen", addr).Msg("serving go's profiler (" + PprofEnv + " is set)")
	return nil
}
