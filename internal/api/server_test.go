package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

type fakeReady struct {
	ok     bool
	reason string
}

func (f fakeReady) Ready() (bool, string) { return f.ok, f.reason }

func serve(t *testing.T, ready Readiness, method, path string) (int, string, http.Header) {
	t.Helper()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hapctl_up 1\n") })
	s := &Server{Ready: ready, Service: &fakeService{}, Metrics: metrics, Log: zerolog.Nop()}
	rec := httptest.NewRecorder()
	s.Routes().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ready      fakeReady
		method     string
		path       string
		wantStatus int
		wantJSON   map[string]any
	}{
		{"healthz", fakeReady{}, "GET", "/healthz", 200, map[string]any{"status": "ok"}},
		{"ready", fakeReady{ok: true}, "GET", "/readyz", 200, map[string]any{"ready": true}},
		{"not ready", fakeReady{reason: "haproxy does not answer: dial unix"}, "GET", "/readyz", 503,
			map[string]any{"ready": false, "reason": "haproxy does not answer: dial unix"}},
		{"unknown route", fakeReady{}, "GET", "/v1/nope", 404, map[string]any{"error": "no such route"}},
		{"wrong method", fakeReady{}, "POST", "/healthz", 405, map[string]any{"error": "method POST not allowed on /healthz; use GET or HEAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body, hdr := serve(t, tt.ready, tt.method, tt.path)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", status, tt.wantStatus, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if len(got) != len(tt.wantJSON) {
				t.Fatalf("body %v, want %v", got, tt.wantJSON)
			}
			for k, v := range tt.wantJSON {
				if got[k] != v {
					t.Fatalf("body %v, want %v", got, tt.wantJSON)
				}
			}
		})
	}
	if status, body, _ := serve(t, fakeReady{}, "GET", "/metrics"); status != 200 || !strings.Contains(body, "hapctl_up 1") {
		t.Fatalf("metrics: %d %q", status, body)
	}
}

// HEAD is answered like GET without a body, and a 405 says what is allowed.
func TestHeadAndAllow(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer("s3cret")
	srv := httptest.NewServer(s.Routes())
	t.Cleanup(srv.Close)
	for _, path := range []string{"/", "/healthz", "/v1/backends"} {
		resp, err := http.Head(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") == "" {
			t.Errorf("HEAD %s: %d, content type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	tests := []struct{ method, path, allow string }{
		{"DELETE", "/", "GET, HEAD"},
		{"POST", "/v1/backends", "GET, HEAD"},
		{"GET", "/v1/backends/be_web/servers/srv1/drain", "POST"},
		{"HEAD", "/v1/backends/be_web/servers/srv1/undrain", "POST"},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d, Allow %q, want 405 with %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.allow)
		}
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/api.sock"
	l, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed hapctl leaves its socket file; the next start must take it over.
	if ul, ok := l.(interface{ SetUnlinkOnClose(bool) }); ok {
		ul.SetUnlinkOnClose(false)
	}
	_ = l.Close()
	l2, err := Listen("unix:" + path)
	if err != nil {
		t.Fatalf("second listen: %v", err)
	}
	_ = l2.Close()
}

func TestBodyWithTrailingDataIsRefused(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{}}0`, `{"reason":"x"}]junk`, `{} {}`, `{}x`} {
		s, fake := newTestServer("")
		rec := httptest.NewRecorder()
		s.Routes().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/backends/be_web/servers/srv1/drain", strings.NewReader(body)))
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "data after the JSON object") {
			t.Errorf("body %q: %d %s, want 400", body, rec.Code, rec.Body)
		}
		if fake.overrideCalls() != 0 {
			t.Errorf("body %q reached the service", body)
		}
	}
}

// TestStatusPage checks GET /: the embedded page, self-contained (nothing
// loaded from elsewhere, which its Content-Security-Policy enforces too),
// and never framed.
func TestStatusPage(t *testing.T) {
	s, _ := newTestServer("")
	rec := httptest.NewRecorder()
	s.Routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, external := range []string{"http://", "https://", "src=", "<link", "@import", "url("} {
		if strings.Contains(body, external) {
			t.Errorf("the page refers to something outside it: %q", external)
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if !strings.Contains(body, `fetch("/v1/backends")`) || !strings.Contains(body, "textContent") {
		t.Error("the page does not read /v1/backends or does not render as text")
	}
}
