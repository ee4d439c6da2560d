package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fullAnswer is what Consul answers for a service of n instances: every
// node, service and check field, as consul/api's types encode them.
func fullAnswer(t testing.TB, n int) []byte {
	t.Helper()
	entries := make([]*api.ServiceEntry, n)
	for i := range entries {
		node := fmt.Sprintf("node-%d", i%40)
		id := fmt.Sprintf("web-%d", i)
		entries[i] = &api.ServiceEntry{
			Node: &api.Node{ID: "0b9c-" + node, Node: node, Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Datacenter: "dc1",
				TaggedAddresses: map[string]string{"lan": "10.1.0.1", "wan": "10.1.0.1"}, Meta: map[string]string{"consul-network-segment": ""},
				CreateIndex: 10, ModifyIndex: 12},
			Service: &api.AgentService{ID: id, Service: "web", Tags: []string{"v2", "blue"}, Address: fmt.Sprintf("10.2.%d.%d", i/250, i%250+1),
				Port: 8000 + i%1000, Weights: api.AgentWeights{Passing: 1 + i%5, Warning: 1}, Meta: map[string]string{"version": "2.1.0"},
				CreateIndex: uint64(100 + i), ModifyIndex: uint64(200 + i)},
			Checks: api.HealthChecks{
				{Node: node, CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", Type: "", CreateIndex: 10, ModifyIndex: 10},
				{Node: node, CheckID: "service:" + id, Name: "Service 'web' check", Status: "passing", Output: "HTTP GET http://10.2.0.1:8000/health: 200 OK Output: ok",
					ServiceID: id, ServiceName: "web", ServiceTags: []string{"v2", "blue"}, Type: "http", CreateIndex: 101, ModifyIndex: 150},
			},
		}
	}
	body, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// stdDecode is consul/api's own decoding — every field, with encoding/json —
// except that data after the answer is refused (consul/api's stream decoder
// ignores it; DecodeHealth refuses it).
func stdDecode(body []byte) ([]*api.ServiceEntry, error) {
	var out []*api.ServiceEntry
	err := json.Unmarshal(body, &out)
	return out, err
}

// lean keeps the fields DecodeHealth promises, for comparing with consul/api's decoding.
func lean(entries []*api.ServiceEntry) []*api.ServiceEntry {
	out := make([]*api.ServiceEntry, len(entries))
	for i, e := range entries {
		c := &api.ServiceEntry{}
		if e != nil && e.Node != nil {
			c.Node = &api.Node{Node: e.Node.Node, Address: e.Node.Address}
		}
		if e != nil && e.Service != nil {
			s := e.Service
			c.Service = &api.AgentService{ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address, Port: s.Port, Weights: s.Weights, CreateIndex: s.CreateIndex}
		}
		out[i] = c
	}
	return out
}

func TestDecodeHealthMatchesConsulAPI(t *testing.T) {
	body := fullAnswer(t, 300)
	want, err := stdDecode(body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHealth(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, lean(want)) {
		t.Fatalf("DecodeHealth differs from consul/api's decoding:\n got %+v\nwant %+v", got[0].Service, want[0].Service)
	}
	// And what FromEntries makes of both is the same.
	v1, i1 := FromEntries(got)
	v2, i2 := FromEntries(want)
	if len(v1) != 300 || !reflect.DeepEqual(v1, v2) || !reflect.DeepEqual(i1, i2) {
		t.Fatalf("FromEntries differs: %d valid against %d", len(v1), len(v2))
	}
}

func TestDecodeHealthRefusesWhatConsulAPIRefuses(t *testing.T) {
	for _, body := range []string{``, `{`, `[{"Service":{"Port":"80"}}]`, `[{"Service":{"Port":1.5}}]`, `{"Service":{}}`, `[{"Node":[]}]`, `[1]`} {
		_, stdErr := stdDecode([]byte(body))
		_, err := DecodeHealth([]byte(body))
		if stdErr == nil || err == nil {
			t.Errorf("%q: consul/api's decoding says %v, DecodeHealth says %v; both must refuse it", body, stdErr, err)
		}
	}
	got, err := DecodeHealth([]byte(`null`))
	if err != nil || len(got) != 0 {
		t.Errorf("null: %v, %v", got, err)
	}
}

// TestHealthClientRequest checks the request HealthClient sends and how it
// reads the answer: the same parameters consul/api would send, the index,
// and a refusal as consul/api's StatusError (so that explain still hints at
// the connection limit on a 429).
func TestHealthClientRequest(t *testing.T) {
	var got *http.Request
	status := http.StatusOK
	filtered := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		if status != http.StatusOK {
			http.Error(w, "Your IP is issuing too many concurrent connections, please rate limit your calls", status)
			return
		}
		if filtered {
			w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
		}
		w.Header().Set("X-Consul-Index", "42")
		w.Header().Set("X-Consul-KnownLeader", "true")
		_, _ = w.Write([]byte(`[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80,"CreateIndex":7}}]`))
	}))
	defer srv.Close()
	cfg := api.DefaultConfig()
	cfg.Address = srv.Listener.Addr().String()
	cfg.Token = "config-token"
	cfg.Datacenter = "dc9"
	if _, err := api.NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	h, err := NewHealthClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	entries, meta, err := h.ServiceMultipleTags("web", []string{"v2", "blue"}, true,
		&api.QueryOptions{AllowStale: true, WaitIndex: 41, WaitTime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Service.ID != "web-1" || entries[0].Node.Address != "10.0.0.1" || entries[0].Service.CreateIndex != 7 {
		t.Fatalf("entries: %+v", entries)
	}
	if meta.LastIndex != 42 || !meta.KnownLeader {
		t.Fatalf("meta: %+v", meta)
	}
	q := got.URL.Query()
	if got.URL.Path != "/v1/health/service/web" || q.Get("passing") != "1" || strings.Join(q["tag"], ",") != "v2,blue" ||
		q.Get("index") != "41" || q.Get("wait") != "300000ms" || !q.Has("stale") || q.Get("dc") != "dc9" {
		t.Fatalf("request: %s", got.URL)
	}
	if got.Header.Get("X-Consul-Token") != "config-token" {
		t.Fatalf("token header: %q", got.Header.Get("X-Consul-Token"))
	}
	if got.Header.Get("Accept-Encoding") != "identity" {
		t.Fatalf("a loopback agent is asked for identity encoding; got %q", got.Header.Get("Accept-Encoding"))
	}
	_, _, err = h.ServiceMultipleTags("web", nil, true, &api.QueryOptions{Token: "query-token", RequireConsistent: true})
	if err != nil || got.Header.Get("X-Consul-Token") != "query-token" || !got.URL.Query().Has("consistent") || got.URL.Query().Has("index") {
		t.Fatalf("second request %s (token %q): %v", got.URL, got.Header.Get("X-Consul-Token"), err)
	}

	// Instances left out by ACLs: an error, not a smaller set.
	filtered = true
	if _, _, err = h.ServiceMultipleTags("web", nil, true, nil); err == nil || !strings.Contains(err.Error(), "may not read") {
		t.Fatalf("an answer filtered by ACLs: %v", err)
	}
	filtered = false

	status = http.StatusTooManyRequests
	_, _, err = h.ServiceMultipleTags("web", nil, true, nil)
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTooManyRequests {
		t.Fatalf("a 429 must come back as api.StatusError: %v", err)
	}
	if !strings.Contains(explain(err).Error(), "http_max_conns_per_client") {
		t.Fatalf("explain does not hint at the limit: %v", explain(err))
	}
}

func TestLocalAgent(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8500": true, "[::1]:8500": true, "localhost:8500": true, "/run/consul.sock": true, "127.0.0.53": true,
		"10.0.0.1:8500": false, "consul.service:8500": false, "[2001:db8::1]:8500": false,
	} {
		if got := localAgent(addr); got != want {
			t.Errorf("localAgent(%q) = %v, want %v", addr, got, want)
		}
	}
}

// BenchmarkDecodeHealth compares decoding a 1000-instance answer the way
// consul/api does (every field, encoding/json) with DecodeHealth.
func BenchmarkDecodeHealth(b *testing.B) {
	body := fullAnswer(b, 1000)
	b.Run("consul-api", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := stdDecode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hapctl", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := DecodeHealth(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Answers refused or filtered by ACLs wait aclRetry before the next try;
// other failures back off as usual.
func TestDeniedByACL(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&ACLFilteredError{What: "instances of web", Fix: "x"}, true},
		{fmt.Errorf("reading: %w", &ACLFilteredError{What: "keys", Fix: "x"}), true},
		{api.StatusError{Code: http.StatusForbidden, Body: "Permission denied"}, true},
		{api.StatusError{Code: http.StatusTooManyRequests}, false},
		{errors.New("connection refused"), false},
	} {
		if got := deniedByACL(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}
