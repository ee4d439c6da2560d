package api

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var at = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// fakeService serves one backend, be_web, and records override calls.
type fakeService struct {
	mu    sync.Mutex
	calls []OverrideRequest
}

func (f *fakeService) backend() Backend {
	return Backend{Name: "be_web", Service: "web", Tags: []string{"prod"}, Growth: "dynamic", ConsulIndex: 42, LastSync: &at,
		Slots: []Slot{
			{Name: "srv1", Address: "10.0.0.1", Port: 8080, Weight: 1, AdminState: "ready", OperState: "up", ServiceID: "web-1", Node: "n1"},
			{Name: "srv2", Address: "10.0.0.2", Port: 8080, Weight: 3, AdminState: "drain", OperState: "up", ServiceID: "web-2", Node: "n2",
				Override: &Override{State: "drain", Reason: "deploy 42", By: "alice", At: at}},
			{Name: "srv3", Address: "10.0.0.3", Port: 8080, Weight: 1, AdminState: "drain", OperState: "up", Leaving: true},
			{Name: "srv4", Address: "127.0.0.1", Port: 1, Weight: 1, AdminState: "maint", OperState: "down", Free: true},
		},
		Unplaced: []string{"web-9"},
		Invalid:  []Invalid{{ServiceID: "web-bad", Node: "n1", Reason: `service address: "a b" is not an IP address (hostnames are not resolved)`}},
		Drains: []Drain{{ServiceID: "web-2", Server: "srv2", Override: Override{State: "drain", Reason: "deploy 42", By: "alice", At: at}},
			{ServiceID: "web-7", Override: Override{State: "maint", At: at}}},
	}
}

func (f *fakeService) Backends(context.Context) ([]Backend, error) {
	return []Backend{f.backend()}, nil
}

func (f *fakeService) Backend(_ context.Context, name string) (Backend, error) {
	if name != "be_web" {
		return Backend{}, NotFound("no managed backend %q", name)
	}
	return f.backend(), nil
}

func (f *fakeService) Override(_ context.Context, req OverrideRequest) (OverrideResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.mu.Unlock()
	switch {
	case req.Backend != "be_web":
		return OverrideResult{}, NotFound("no managed backend %q", req.Backend)
	case req.Server == "srv4":
		return OverrideResult{}, Conflict("server srv4 of be_web is free: nothing to %s", req.Action)
	case req.Server == "consul-down":
		return OverrideResult{}, Unavailable("the %s was not stored, nothing changed: consul: connection refused", req.Action)
	case req.Server != "srv1" && req.Server != "web-1":
		return OverrideResult{}, NotFound("backend be_web has no server %q", req.Server)
	}
	res := OverrideResult{Backend: "be_web", Server: "srv1", ServiceID: "web-1", Address: "10.0.0.1:8080", Action: req.Action,
		State: req.Action, Reason: req.Reason, By: req.By, At: &at, Applied: req.Reason != "slow"}
	if req.Action == ActionUndrain {
		res.State, res.Reason, res.At = "ready", "", nil
	}
	if !res.Applied {
		res.Note = "stored in consul kv, where every node reads it; not applied here yet: this node has not synced the backend since"
	}
	return res, nil
}

func (f *fakeService) Plan(context.Context) (Plan, error) {
	return Plan{Reload: false, Backends: []BackendPlan{{Name: "be_web", Commands: []string{"set server be_web/srv4 addr 10.0.0.9 port 8080", "set server be_web/srv4 state ready"},
		Slots: 8, Bound: 4, Unplaced: 0, GrowTo: 16, GrowBy: "add server"}}}, nil
}

func (f *fakeService) overrideCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func newTestServer(token string) (*Server, *fakeService) {
	f := &fakeService{}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hapctl_up 1\n") })
	return &Server{Ready: fakeReady{ok: true}, Service: f, Metrics: metrics, Token: token, Log: zerolog.Nop()}, f
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// TestAPIGolden calls every route with good and bad input, compares each
// answer with a golden file and validates it against openapi.json.
func TestAPIGolden(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	const token = "s3cret"
	auth := map[string]string{"Authorization": "Bearer " + token}
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		headers map[string]string
		status  int
		calls   int // override calls the service must have seen
	}{
		{"backends", "GET", "/v1/backends", "", nil, 200, 0},
		{"backend", "GET", "/v1/backends/be_web", "", nil, 200, 0},
		{"backend-unknown", "GET", "/v1/backends/be_nope", "", nil, 404, 0},
		{"plan", "GET", "/v1/plan", "", nil, 200, 0},
		{"drain", "POST", "/v1/backends/be_web/servers/srv1/drain", `{"reason":"deploy 43","by":"bob"}`, auth, 200, 1},
		{"drain-no-body", "POST", "/v1/backends/be_web/servers/web-1/drain", "", auth, 200, 1},
		{"drain-not-applied", "POST", "/v1/backends/be_web/servers/srv1/drain", `{"reason":"slow","by":"bob"}`, auth, 202, 1},
		{"maint", "POST", "/v1/backends/be_web/servers/srv1/maint", `{"reason":"disk","by":"bob"}`, auth, 200, 1},
		{"undrain", "POST", "/v1/backends/be_web/servers/srv1/undrain", `{"by":"bob"}`, auth, 200, 1},
		{"drain-free", "POST", "/v1/backends/be_web/servers/srv4/drain", "", auth, 409, 1},
		{"drain-unknown-server", "POST", "/v1/backends/be_web/servers/srv99/drain", "", auth, 404, 1},
		{"drain-unknown-backend", "POST", "/v1/backends/be_nope/servers/srv1/drain", "", auth, 404, 1},
		{"drain-consul-down", "POST", "/v1/backends/be_web/servers/consul-down/drain", "", auth, 503, 1},
		{"drain-path-trick", "POST", "/v1/backends/..%2F..%2Fetc/servers/srv1/drain", "", auth, 404, 1},
		{"drain-no-token", "POST", "/v1/backends/be_web/servers/srv1/drain", "", nil, 401, 0},
		{"drain-wrong-token", "POST", "/v1/backends/be_web/servers/srv1/drain", "", map[string]string{"Authorization": "Bearer nope"}, 403, 0},
		{"drain-basic-auth", "POST", "/v1/backends/be_web/servers/srv1/drain", "", map[string]string{"Authorization": "Basic czNjcmV0"}, 401, 0},
		{"drain-bad-json", "POST", "/v1/backends/be_web/servers/srv1/drain", `{"reason":`, auth, 400, 0},
		{"drain-unknown-field", "POST", "/v1/backends/be_web/servers/srv1/drain", `{"reason":"x","state":"ready"}`, auth, 400, 0},
		{"drain-two-objects", "POST", "/v1/backends/be_web/servers/srv1/drain", `{} {}`, auth, 400, 0},
		{"drain-too-large", "POST", "/v1/backends/be_web/servers/srv1/drain", `{"reason":"` + strings.Repeat("x", MaxBody) + `"}`, auth, 413, 0},
		{"unknown-action", "POST", "/v1/backends/be_web/servers/srv1/ready", "", auth, 404, 0},
		{"get-on-drain", "GET", "/v1/backends/be_web/servers/srv1/drain", "", nil, 405, 0},
		{"healthz", "GET", "/healthz", "", nil, 200, 0},
		{"readyz", "GET", "/readyz", "", nil, 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, f := newTestServer(token)
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.RemoteAddr = "192.0.2.7:40000"
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			s.Routes().ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			if n := f.overrideCalls(); n != tt.calls {
				t.Fatalf("service saw %d override calls, want %d", n, tt.calls)
			}
			if tt.status == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: Bearer")
			}
			compareGolden(t, filepath.Join("testdata", tt.name+".golden"), rec.Body.Bytes())
			validate(t, router, tt.method, tt.path, tt.headers, rec)
		})
	}
}

// validate checks a response against the OpenAPI document: the route and
// the status must be documented and the body must fit the schema. Answers
// to routes the API does not have (404, 405) must be errors.
func validate(t *testing.T, router routers.Router, method, path string, headers map[string]string, rec *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest(method, "http://127.0.0.1:9680"+path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s %s answered %d but is not in openapi.json: %v", method, path, rec.Code, err)
		}
		if !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
			t.Fatalf("not an error body: %s", rec.Body)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status:  rec.Code,
		Header:  rec.Header(),
		Body:    io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Fatalf("%s %s: the answer does not fit openapi.json: %v\n%s", method, path, err, rec.Body)
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/api -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("answer differs from %s:\n got: %s\nwant: %s", path, got, want)
	}
}

// TestOpenAPICoversEveryRoute checks that the routes the API serves and the
// paths openapi.json documents are the same set.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadDoc(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	s, _ := newTestServer("")
	var served []string
	err := chi.Walk(s.Routes().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("routes and openapi.json differ:\n served:     %v\n documented: %v", served, documented)
	}
	// Every mutating route needs the token; every documented error is JSON.
	for path, item := range doc.Paths.Map() {
		if op := item.Post; op != nil {
			if op.Security == nil || op.Responses.Status(401) == nil || op.Responses.Status(403) == nil {
				t.Errorf("POST %s: security or 401/403 not documented", path)
			}
		}
	}
}

func TestAuthorizeWithoutToken(t *testing.T) {
	t.Parallel()
	// No token configured (loopback or unix socket): mutating calls pass.
	s, f := newTestServer("")
	rec := httptest.NewRecorder()
	s.Routes().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/backends/be_web/servers/srv1/drain", nil))
	if rec.Code != 200 || f.overrideCalls() != 1 {
		t.Fatalf("status %d, calls %d", rec.Code, f.overrideCalls())
	}
	if got := f.calls[0].By; got != "192.0.2.1:1234" {
		t.Fatalf("by = %q, want the caller's address", got)
	}
}
