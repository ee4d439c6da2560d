// Package api is hapctl's admin HTTP API (SPEC.md, "Admin API"). Handlers
// return errors; one place renders them as JSON.
package api

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// Readiness tells whether hapctl is in sync and why not.
type Readiness interface {
	Ready() (bool, string)
}

// Server serves the admin API.
type Server struct {
	Ready   Readiness
	Metrics http.Handler
	Log     zerolog.Logger
}

// Error is an error with an HTTP status.
type Error struct {
	Status int
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Routes declares every route in one place.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", s.handle(s.healthz))
	r.Get("/readyz", s.handle(s.readyz))
	r.Method(http.MethodGet, "/metrics", s.Metrics)
	r.NotFound(s.handle(func(http.ResponseWriter, *http.Request) error {
		return &Error{Status: http.StatusNotFound, Err: errors.New("no such route")}
	}))
	r.MethodNotAllowed(s.handle(func(http.ResponseWriter, *http.Request) error {
		return &Error{Status: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}))
	return r
}

// handle renders a handler's error as {"error": "..."} with its status.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		status := http.StatusInternalServerError
		var ae *Error
		if errors.As(err, &ae) {
			status = ae.Status
		}
		if status >= 500 {
			s.Log.Error().Err(err).Str("path", r.URL.Path).Msg("api error")
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) error {
	ok, reason := s.Ready.Ready()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	return nil
}

// Listen opens the listen address: host:port, or unix:/path (a stale socket
// file is replaced).
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// NewHTTPServer wraps a handler with the timeouts a long-running daemon needs.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
