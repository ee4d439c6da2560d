package consul

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/hashicorp/consul/api"
)

// HealthClient answers /v1/health/service/<service> queries like consul/api's
// Health().ServiceMultipleTags, but decodes only the fields hapctl reads.
//
// Why: a service's answer carries every node, service and check field —
// 1.5 to 2.9 MB for 1000 instances — and consul/api decodes all of it into
// ServiceEntry with encoding/json: 33 ms of CPU per answer, measured, for
// every change of a large service. The fields hapctl needs, decoded with
// goccy/go-json, take 2.4 ms (bench: BenchmarkDecodeHealth). Every value is
// still validated by FromEntries afterwards.
type HealthClient struct {
	cfg api.Config // as api.NewClient left it: HttpClient, Scheme, Address, PathPrefix
	// identity asks the agent not to gzip its answers: on loopback or a
	// unix socket, compressing costs both sides CPU and saves nothing.
	identity bool
}

var _ HealthAPI = (*HealthClient)(nil)

// NewHealthClient builds a HealthClient on cfg, which api.NewClient has
// filled in (its HttpClient, scheme and address).
func NewHealthClient(cfg *api.Config) (*HealthClient, error) {
	if cfg.HttpClient == nil {
		return nil, fmt.Errorf("consul config has no http client: call api.NewClient on it first")
	}
	return &HealthClient{cfg: *cfg, identity: localAgent(cfg.Address)}, nil
}

// localAgent reports whether address (as api.NewClient leaves it: host:port,
// or a unix socket path) is on this host.
func localAgent(address string) bool {
	if strings.HasPrefix(address, "/") {
		return true
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// wireEntry is the part of a /v1/health/service answer's entry hapctl reads.
type wireEntry struct {
	Node *struct {
		Node    string
		Address string
	}
	Service *struct {
		ID          string
		Service     string
		Tags        []string
		Address     string
		Port        int
		Weights     api.AgentWeights
		CreateIndex uint64
	}
}

// DecodeHealth decodes a /v1/health/service answer into entries holding the
// fields hapctl reads (node name and address; service ID, name, tags,
// address, port, weights, create index).
func DecodeHealth(body []byte) ([]*api.ServiceEntry, error) {
	var wire []wireEntry
	if err := gojson.Unmarshal(body, &wire); err != nil {
		return nil, fmt.Errorf("decoding consul's answer: %w", err)
	}
	return fromWire(wire), nil
}

func fromWire(wire []wireEntry) []*api.ServiceEntry {
	out := make([]*api.ServiceEntry, len(wire))
	nodes := make([]api.Node, len(wire))
	services := make([]api.AgentService, len(wire))
	for i, w := range wire {
		e := &api.ServiceEntry{}
		if w.Node != nil {
			nodes[i] = api.Node{Node: w.Node.Node, Address: w.Node.Address}
			e.Node = &nodes[i]
		}
		if s := w.Service; s != nil {
			services[i] = api.AgentService{ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address, Port: s.Port,
				Weights: s.Weights, CreateIndex: s.CreateIndex}
			e.Service = &services[i]
		}
		out[i] = e
	}
	return out
}

// ServiceMultipleTags asks for the instances of service carrying every tag
// in tags (passing ones only when passingOnly), honouring q's datacenter,
// consistency, blocking index and wait time, token and context.
func (h *HealthClient) ServiceMultipleTags(service string, tags []string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	if q == nil {
		q = &api.QueryOptions{}
	}
	params := url.Values{}
	set := func(k, v, fallback string) {
		if v == "" {
			v = fallback
		}
		if v != "" {
			params.Set(k, v)
		}
	}
	set("dc", q.Datacenter, h.cfg.Datacenter)
	set("ns", q.Namespace, h.cfg.Namespace)
	set("partition", q.Partition, h.cfg.Partition)
	for _, t := range tags {
		params.Add("tag", t)
	}
	if passingOnly {
		params.Set("passing", "1")
	}
	if q.AllowStale {
		params.Set("stale", "")
	}
	if q.RequireConsistent {
		params.Set("consistent", "")
	}
	if q.WaitIndex != 0 {
		params.Set("index", strconv.FormatUint(q.WaitIndex, 10))
	}
	if q.WaitTime != 0 {
		params.Set("wait", strconv.FormatInt(q.WaitTime.Milliseconds(), 10)+"ms")
	}
	host := h.cfg.Address
	if strings.HasPrefix(host, "/") {
		host = "localhost" // a unix socket: the transport dials the path
	}
	u := url.URL{Scheme: h.cfg.Scheme, Host: host, Path: h.cfg.PathPrefix + "/v1/health/service/" + service, RawQuery: params.Encode()}
	req, err := http.NewRequestWithContext(q.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	if token := cmp.Or(q.Token, h.cfg.Token); token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	if h.identity {
		req.Header.Set("Accept-Encoding", "identity")
	}
	start := time.Now()
	resp, err := h.cfg.HttpClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading consul's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, api.StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	meta := &api.QueryMeta{RequestTime: time.Since(start)}
	if s := resp.Header.Get("X-Consul-Index"); s != "" {
		if meta.LastIndex, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, nil, fmt.Errorf("consul's X-Consul-Index %q: %w", s, err)
		}
	}
	meta.KnownLeader = resp.Header.Get("X-Consul-KnownLeader") == "true"
	if resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true" {
		// Consul answers 200 without the instances the token may not
		// read: serving the rest would drop them without a word.
		return nil, nil, &ACLFilteredError{What: "instances of " + service, Fix: "give it service_prefix and node_prefix read"}
	}
	entries, err := DecodeHealth(body)
	if err != nil {
		return nil, nil, err
	}
	return entries, meta, nil
}
