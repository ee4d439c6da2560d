package consul

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
)

func entry(id, node, nodeAddr, svcAddr string, port int, tags ...string) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: nodeAddr},
		Service: &api.AgentService{ID: id, Service: "web", Address: svcAddr, Port: port, Tags: tags, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
	}
}

func created(e *api.ServiceEntry, index uint64) *api.ServiceEntry {
	e.Service.CreateIndex = index
	return e
}

func withWeight(e *api.ServiceEntry, w int) *api.ServiceEntry {
	e.Service.Weights.Passing = w
	return e
}

func TestFromEntries(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr
	got, invalid := FromEntries([]*api.ServiceEntry{
		entry("web-2", "n1", "10.0.0.1", "10.0.1.2", 8080, "prod"),
		entry("web-1", "n1", "10.0.0.1", "", 8080),            // falls back to the node address
		entry("web-v6", "n2", "10.0.0.2", "2001:db8::7", 443), // IPv6 literal
		entry("web-mapped", "n2", "10.0.0.2", "::ffff:10.0.9.9", 80),
		withWeight(entry("w-heavy", "n3", "10.0.0.3", "10.0.3.1", 80), 1000),
		withWeight(entry("w-unset", "n3", "10.0.0.3", "10.0.3.2", 80), 0),
		withWeight(entry("w-7", "n3", "10.0.0.3", "10.0.3.3", 80), 7),
		entry("bad-semicolon", "n1", "10.0.0.1", "10.0.0.5;shutdown sessions", 80),
		entry("bad-newline", "n1", "10.0.0.1", "10.0.0.5\nset server x", 80),
		entry("bad-space", "n1", "10.0.0.1", "10.0.0.5 port 1", 80),
		entry("bad-hostname", "n1", "10.0.0.1", "web.service.consul", 80),
		entry("bad-port0", "n1", "10.0.0.1", "10.0.0.6", 0),
		entry("bad-port-big", "n1", "10.0.0.1", "10.0.0.6", 70000),
		entry("bad\x07id", "n1", "10.0.0.1", "10.0.0.7", 80),
		entry("bad/slash", "n1", "10.0.0.1", "10.0.0.7", 80),
		entry("bad-tag", "n1", "10.0.0.1", "10.0.0.8", 80, "ok", "ctl\x1b[31m"),
		entry("bad-zone", "n1", "10.0.0.1", "fe80::1%eth0", 80),
		entry("bad-unspecified", "n1", "10.0.0.1", "0.0.0.0", 80),
		entry("bad-node-addr", "n1", "node.example", "", 80),
		created(entry("a-dup-of-web-2", "n9", "10.0.0.9", "10.0.1.2", 8080), 99), // web-2's endpoint, registered later
		created(entry("web-2b", "n9", "10.0.0.9", "10.0.7.7", 8080), 50),
		created(entry("a-first", "n9", "10.0.0.9", "10.0.7.7", 8080), 50), // same CreateIndex: the lower ID wins
		{Service: nil},
	})
	want := []Instance{
		{ID: "a-first", Node: "n9", Addr: ip("10.0.7.7"), Port: 8080, Weight: 1},
		{ID: "w-7", Node: "n3", Addr: ip("10.0.3.3"), Port: 80, Weight: 7},
		{ID: "w-heavy", Node: "n3", Addr: ip("10.0.3.1"), Port: 80, Weight: 256},
		{ID: "w-unset", Node: "n3", Addr: ip("10.0.3.2"), Port: 80, Weight: 1},
		{ID: "web-1", Node: "n1", Addr: ip("10.0.0.1"), Port: 8080, Weight: 1},
		{ID: "web-2", Node: "n1", Addr: ip("10.0.1.2"), Port: 8080, Weight: 1, Tags: []string{"prod"}},
		{ID: "web-mapped", Node: "n2", Addr: ip("10.0.9.9"), Port: 80, Weight: 1},
		{ID: "web-v6", Node: "n2", Addr: ip("2001:db8::7"), Port: 443, Weight: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("valid:\n got  %+v\n want %+v", got, want)
	}
	wantReasons := map[string]string{
		"bad-semicolon":   "is not an IP address",
		"bad-newline":     "is not an IP address",
		"bad-space":       "is not an IP address",
		"bad-hostname":    "hostnames are not resolved",
		"bad-port0":       "port 0 is out of range",
		"bad-port-big":    "port 70000 is out of range",
		`"bad\aid"`:       "service ID",
		`"bad/slash"`:     `has character '/'`,
		"bad-tag":         "tag 1",
		"bad-zone":        "IPv6 zone",
		"bad-unspecified": "unspecified",
		"bad-node-addr":   "node address",
		"a-dup-of-web-2":  `is already instance "web-2", registered earlier`,
		"web-2b":          `is already instance "a-first"`,
		`""`:              "entry has no service",
	}
	if len(invalid) != len(wantReasons) {
		t.Fatalf("%d invalid, want %d: %+v", len(invalid), len(wantReasons), invalid)
	}
	for _, inv := range invalid {
		w, ok := wantReasons[inv.ID]
		if !ok || !strings.Contains(inv.Reason, w) {
			t.Errorf("invalid %q: reason %q, want %q", inv.ID, inv.Reason, w)
		}
		if strings.ContainsAny(inv.ID, "\x07\n;") {
			t.Errorf("invalid ID %q is not safe to log", inv.ID)
		}
	}
}

func TestTagLimits(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxTags+1)
	for i := range many {
		many[i] = "t"
	}
	_, invalid := FromEntries([]*api.ServiceEntry{
		entry("many", "n", "10.0.0.1", "", 80, many...),
		entry("long", "n", "10.0.0.2", "", 80, strings.Repeat("x", MaxTagLen+1)),
		entry("badutf8", "n", "10.0.0.3", "", 80, "\xff"),
	})
	if len(invalid) != 3 {
		t.Fatalf("invalid = %+v", invalid)
	}
}

// FuzzInstance feeds arbitrary registrations through validation: whatever is
// accepted must make safe runtime commands.
func FuzzInstance(f *testing.F) {
	f.Add("web-1", "10.0.0.1", "", 8080, "prod", 1)
	f.Add("web;1", "10.0.0.1;shutdown", "host", 0, "a\nb", 999)
	f.Add("w", "", "2001:db8::1", 65535, "", -5)
	f.Add("w\x00", "::ffff:1.2.3.4", "10.0.0.1", 65536, "\x7f", 0)
	f.Add("x", "1.2.3.4 port 5", "fe80::1%lo", 1, "tag", 256)
	f.Fuzz(func(t *testing.T, id, svcAddr, nodeAddr string, port int, tag string, w int) {
		e := withWeight(entry(id, "node", nodeAddr, svcAddr, port, tag), w)
		valid, invalid := FromEntries([]*api.ServiceEntry{e})
		if len(valid)+len(invalid) != 1 {
			t.Fatalf("%d valid + %d invalid for one entry", len(valid), len(invalid))
		}
		if len(valid) == 0 {
			return
		}
		inst := valid[0]
		if ValidID(inst.ID) != nil || runtime.ValidAddr(inst.Addr) != nil || runtime.ValidPort(inst.Port) != nil || runtime.ValidWeight(inst.Weight) != nil {
			t.Fatalf("accepted an invalid instance %+v", inst)
		}
		for _, cmd := range []func() (runtime.Command, error){
			func() (runtime.Command, error) { return runtime.SetAddr("be", "srv1", inst.Addr, inst.Port) },
			func() (runtime.Command, error) { return runtime.SetWeight("be", "srv1", inst.Weight) },
		} {
			c, err := cmd()
			if err != nil {
				t.Fatalf("valid instance %+v makes no command: %v", inst, err)
			}
			if strings.ContainsAny(c.String(), ";\n\r\x00") {
				t.Fatalf("unsafe command %q", c)
			}
		}
	})
}
