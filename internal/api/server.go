// Package api is hapctl's admin HTTP API (README.md, "Admin API"). Handlers
// return errors; one place renders them as JSON.
package api

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"
)

// Readiness tells whether hapctl is in sync and why not.
type Readiness interface {
	Ready() (bool, string)
}

// MaxBody bounds a request body: a drain reason is at most 512 bytes.
const MaxBody = 16 << 10

//go:embed openapi.json
var openAPI []byte

// statusPage is the status page served at GET /: one file, styles and
// script inline, no external resource.
//
//go:embed status.html
var statusPage []byte

// statusPagePolicy lets the page run its own inline script and style and
// talk to this API only: nothing is loaded from elsewhere, and it cannot be
// framed.
const statusPagePolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Server serves the admin API.
type Server struct {
	Ready   Readiness
	Service Service
	Metrics http.Handler
	// Token, when set, is the bearer token mutating calls need.
	Token string
	Log   zerolog.Logger
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
	// HEAD is answered by the GET route (probes and curl -I), without a body.
	r.Use(middleware.GetHead)
	r.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", statusPagePolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(statusPage)
	})
	r.Get("/healthz", s.handle(s.healthz))
	r.Get("/readyz", s.handle(s.readyz))
	r.Method(http.MethodGet, "/metrics", s.Metrics)
	r.Get("/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	r.Get("/v1/backends", s.handle(s.backends))
	r.Get("/v1/backends/{backend}", s.handle(s.backend))
	r.Get("/v1/plan", s.handle(s.plan))
	r.Group(func(r chi.Router) {
		r.Use(s.authorize)
		for _, action := range []string{ActionDrain, ActionMaint, ActionUndrain} {
			r.Post("/v1/backends/{backend}/servers/{server}/"+action, s.handle(s.override(action)))
		}
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Err: errors.New("no such route")})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := allowedMethods(r, req.URL.Path)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, req, &Error{Status: http.StatusMethodNotAllowed,
			Err: fmt.Errorf("method %s not allowed on %s; use %s", req.Method, req.URL.Path, strings.Join(allowed, " or "))})
	})
	return r
}

// allowedMethods lists the methods routes has for path, for a 405's Allow
// header (chi sets it only in its own 405 handler).
func allowedMethods(routes chi.Routes, path string) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		probe := m
		if m == http.MethodHead {
			probe = http.MethodGet // served by GetHead
		}
		if routes.Match(chi.NewRouteContext(), probe, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// handle renders a handler's error as {"error": "..."} with its status.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// writeError is the one place errors become answers.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
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

func (s *Server) backends(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.Service.Backends(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BackendList{Backends: bs})
	return nil
}

func (s *Server) backend(w http.ResponseWriter, r *http.Request) error {
	name, err := pathParam(r, "backend")
	if err != nil {
		return err
	}
	b, err := s.Service.Backend(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) error {
	p, err := s.Service.Plan(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// overrideBody is the optional body of drain, maint and undrain.
type overrideBody struct {
	Reason string `json:"reason"`
	// By names who asked; default: the caller's address.
	By string `json:"by"`
}

func (s *Server) override(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		backend, err := pathParam(r, "backend")
		if err != nil {
			return err
		}
		server, err := pathParam(r, "server")
		if err != nil {
			return err
		}
		var body overrideBody
		if err := decodeBody(w, r, &body); err != nil {
			return err
		}
		if body.By == "" {
			body.By = caller(r)
		}
		res, err := s.Service.Override(r.Context(), OverrideRequest{Backend: backend, Server: server, Action: action, Reason: body.Reason, By: body.By})
		if err != nil {
			return err
		}
		status := http.StatusOK
		if !res.Applied {
			status = http.StatusAccepted
		}
		writeJSON(w, status, res)
		return nil
	}
}

// decodeBody reads an optional JSON object of at most MaxBody bytes.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Err: fmt.Errorf("request body is larger than %d bytes", MaxBody)}
		}
		return &Error{Status: http.StatusBadRequest, Err: fmt.Errorf("reading request body: %w", err)}
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Err: fmt.Errorf("request body is not valid JSON for this call: %w", err)}
	}
	// More is false before a stray '}' or ']': read on to the end instead.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &Error{Status: http.StatusBadRequest, Err: errors.New("request body has data after the JSON object")}
	}
	return nil
}

// pathParam returns a path parameter, unescaped.
func pathParam(r *http.Request, name string) (string, error) {
	v, err := url.PathUnescape(chi.URLParam(r, name))
	if err != nil {
		return "", &Error{Status: http.StatusBadRequest, Err: fmt.Errorf("%s in the path: %w", name, err)}
	}
	return v, nil
}

// caller names the client for an override's "by": its address.
func caller(r *http.Request) string {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "unix socket"
	}
	return r.RemoteAddr
}

// authorize requires the bearer token, when one is set: 401 without one,
// 403 with a wrong one. Tokens are compared in constant time (as hashes, so
// that not even the length leaks).
func (s *Server) authorize(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Token == "" {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hapctl"`)
			s.writeError(w, r, &Error{Status: http.StatusUnauthorized,
				Err: errors.New("this call needs a token: Authorization: Bearer <token> (hapctl --token or HAPCTL_TOKEN)")})
			return
		}
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Err: errors.New("wrong token")})
			return
		}
		next.ServeHTTP(w, r)
	})
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
