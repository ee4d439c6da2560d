package consul

import (
	"cmp"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
)

// FuzzParseDrains feeds a KV folder of fuzzed keys and values through
// ParseDrains: every override it keeps must be valid and stored under its
// own DrainKey, must survive being written back as Put writes it, and
// KeepUnreadable must leave only valid overrides behind.
func FuzzParseDrains(f *testing.F) {
	good := []byte(`{"state":"drain","reason":"deploy 42","by":"alice","at":"2026-11-21T10:00:00Z"}`)
	f.Add("hapctl", "be_web/web-1", good, "hapctl/drains/be_web/web-2", []byte(`{"state":"maint","at":"2026-11-21T10:00:00+02:00"}`))
	f.Add("/hapctl/", "be_web/", []byte(nil), "hapctl/drains/", []byte(nil))
	f.Add("hapctl", "be_web/web-1", []byte(`{"state":"ready"}`), "hapctl/drains/be_web/web-1", []byte(`{"state":"drain"} trailing`))
	f.Add("hapctl", "be web/x", good, "hapctl/drains/be_web/a/b", good)
	f.Add("hapctl", "be_web/..", good, "hapctl/drains/be_web/.", good)
	f.Add("hapctl", "be_web/web;1", []byte(`{"state":"drain","reason":"a\u0000b"}`), "hapctl/drains/be\n_web/x", []byte(`{"state":"drain","extra":1}`))
	f.Add("a/b", "be_web/x", []byte(`{"state":"drain","reason":"\xff\xfe"}`), "other/drains/be_web/x", good)
	f.Add("hapctl", "be_web/x", []byte(`{"state":"maint","reason":"`+strings.Repeat("r", MaxReasonLen+1)+`"}`), "hapctl/drains/be_web/y", []byte(`{"State":"DRAIN","AT":"9999-12-31T23:59:59Z"}`))
	f.Add("hapctl", "be_web/x", []byte(`null`), "hapctl/drains/be_web/y", []byte(`{"state":null,"at":"0000-01-01T00:00:00+01:00"}`))
	f.Add("", strings.Repeat("b", 129)+"/x", good, "/drains/b/"+strings.Repeat("i", 257), good)
	f.Fuzz(func(t *testing.T, prefix, rest1 string, value1 []byte, key2 string, value2 []byte) {
		pairs := api.KVPairs{{Key: DrainsPrefix(prefix) + rest1, Value: value1}, nil, {Key: key2, Value: value2}}
		drains, errs := ParseDrains(prefix, pairs)
		keys := map[string]bool{pairs[0].Key: true, pairs[2].Key: true}
		for backend, ov := range drains {
			for id, o := range ov {
				key, err := DrainKey(prefix, backend, id)
				if err != nil || !keys[key] {
					t.Fatalf("override %s/%s: key %q (%v) is none of the pairs'", backend, id, key, err)
				}
				if err := o.Validate(); err != nil {
					t.Fatalf("kept an invalid override %+v: %v", o, err)
				}
				value, err := json.Marshal(o)
				if err != nil {
					t.Fatalf("kept an override Put cannot write: %+v: %v", o, err)
				}
				back, berrs := ParseDrains(prefix, api.KVPairs{{Key: key, Value: value}})
				if len(berrs) != 0 || !back[backend][id].Same(o) {
					t.Fatalf("%s = %s reads back as %+v, %v; want %+v", key, value, back, berrs, o)
				}
			}
		}
		// kv_prefix is checked by the config; only keys come from Consul.
		safePrefix := strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") == ""
		for _, e := range errs {
			if e.Backend != "" && (runtime.ValidName(e.Backend) != nil || ValidID(e.ID) != nil) {
				t.Fatalf("error names an invalid instance %q/%q", e.Backend, e.ID)
			}
			if msg := e.Error(); safePrefix && (!utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0) {
				t.Fatalf("error %q is not safe to log", msg)
			}
		}
		KeepUnreadable(drains, errs, nil)
		for _, e := range errs {
			if e.Backend == "" {
				continue
			}
			o, ok := drains[e.Backend][e.ID]
			if !ok || o.Validate() != nil {
				t.Fatalf("unreadable %s/%s: kept as %+v (%v), want a valid drain", e.Backend, e.ID, o, ok)
			}
		}
	})
}

// FuzzOverride checks Validate's promise (a state of drain or maint, short
// printable text) and that a valid override survives the JSON it is stored
// as.
func FuzzOverride(f *testing.F) {
	f.Add(uint8(runtime.StateDrain), "deploy 42", "alice", int64(1795255200), int64(0))
	f.Add(uint8(runtime.StateMaint), "", "127.0.0.1:5555", int64(0), int64(999))
	f.Add(uint8(runtime.StateReady), "x", "y", int64(-1), int64(1))
	f.Add(uint8(0), "a\nb", "c\x00", int64(1<<62), int64(-1))
	f.Add(uint8(runtime.StateDrain), "\xff", "é ✓ 😀", int64(253402300800), int64(0))
	f.Add(uint8(runtime.StateDrain), strings.Repeat("r", MaxReasonLen), strings.Repeat("b", MaxByLen+1), int64(0), int64(0))
	f.Add(uint8(runtime.StateMaint), "\u2028\u0085\x7f", "by\r", int64(1), int64(1))
	f.Fuzz(func(t *testing.T, state uint8, reason, by string, sec, nsec int64) {
		o := Override{State: runtime.State(state), Reason: reason, By: by, At: time.Unix(sec, nsec).UTC()}
		if o.Validate() != nil {
			return
		}
		if o.State != runtime.StateDrain && o.State != runtime.StateMaint {
			t.Fatalf("Validate accepted state %v", o.State)
		}
		for _, s := range []string{reason, by} {
			if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
				t.Fatalf("Validate accepted text %q", s)
			}
		}
		if len(reason) > MaxReasonLen || len(by) > MaxByLen {
			t.Fatalf("Validate accepted %d+%d bytes", len(reason), len(by))
		}
		data, err := json.Marshal(o)
		if err != nil {
			return // an At beyond year 9999 has no JSON form; Put reports it
		}
		var back Override
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&back); err != nil || !back.Same(o) || back.Validate() != nil {
			t.Fatalf("%s reads back as %+v, %v; want %+v", data, back, err, o)
		}
	})
}

// FuzzParseAddr checks that an accepted address is valid for HAProxy,
// unmapped, and prints as a literal that ParseAddr accepts as the same.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "2001:db8::7", "::ffff:10.0.9.9", "::1", "fe80::1%eth0", "0.0.0.0", "::",
		"224.0.0.1", "10.0.0.1;shutdown", "10.0.0.1\n", " 10.0.0.1", "10.0.0.1:80", "[::1]", "web.service.consul",
		"010.0.0.1", "1.2.3.256", "::ffff:0.0.0.0", "\x00", "", strings.Repeat("1", 1000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			if a.IsValid() {
				t.Fatalf("ParseAddr(%q) = %v with error %v", s, a, err)
			}
			return
		}
		if err := runtime.ValidAddr(a); err != nil {
			t.Fatalf("ParseAddr(%q) = %v: %v", s, a, err)
		}
		if raw, err := netip.ParseAddr(s); err != nil || raw.Unmap() != a {
			t.Fatalf("ParseAddr(%q) = %v, but netip reads %v, %v", s, a, raw, err)
		}
		if back, err := ParseAddr(a.String()); err != nil || back != a {
			t.Fatalf("%v prints as %q, which parses as %v, %v", a, a.String(), back, err)
		}
	})
}

// FuzzDrainKey checks that DrainKey builds a key only from a valid backend
// and service ID, and that ParseDrains reads the key back to them.
func FuzzDrainKey(f *testing.F) {
	f.Add("hapctl", "be_web", "web-1:10.0.0.5:8080")
	f.Add("/hapctl/", "be_web", "a@b+c=d")
	f.Add("hapctl", "be/web", "a")
	f.Add("hapctl", "be_web", "a/b")
	f.Add("hapctl", "be_web", "..")
	f.Add("hapctl", "be_web", "../x")
	f.Add("hapctl", "", "a")
	f.Add("hapctl", "be_web", "a\nb")
	f.Add("a//b", "be_web", "a;b")
	f.Add("", "be_web", strings.Repeat("i", MaxIDLen))
	f.Add("hapctl", "be_web", strings.Repeat("i", MaxIDLen+1))
	f.Add("x\x00", "b", "\xff")
	f.Fuzz(func(t *testing.T, prefix, backend, id string) {
		if err := ValidID(id); err == nil {
			if id == "" || len(id) > MaxIDLen || id == "." || id == ".." || strings.ContainsAny(id, "/ \n\r\x00;#%") {
				t.Fatalf("ValidID accepted %q", id)
			}
		}
		key, err := DrainKey(prefix, backend, id)
		if err != nil {
			if key != "" {
				t.Fatalf("key %q with error %v", key, err)
			}
			return
		}
		if runtime.ValidName(backend) != nil || ValidID(id) != nil {
			t.Fatalf("DrainKey(%q, %q) = %q", backend, id, key)
		}
		if want := DrainsPrefix(prefix) + backend + "/" + id; key != want {
			t.Fatalf("key %q, want %q", key, want)
		}
		o := Override{State: runtime.StateMaint, At: time.Unix(1, 0).UTC()}
		value, _ := json.Marshal(o)
		drains, errs := ParseDrains(prefix, api.KVPairs{{Key: key, Value: value}})
		if len(errs) != 0 || len(drains) != 1 || len(drains[backend]) != 1 || !drains[backend][id].Same(o) {
			t.Fatalf("%s reads back as %v, %v", key, drains, errs)
		}
	})
}

// FuzzFromEntries registers three instances and checks the whole result:
// each entry is valid or invalid, the valid ones are sorted and pass the
// validators, and one endpoint goes to the instance registered first.
func FuzzFromEntries(f *testing.F) {
	f.Add("web-1", "10.0.0.1", 80, uint64(1), "web-2", "10.0.0.1", 80, uint64(2), "web-3", "10.0.0.3", 80, uint64(0))
	f.Add("b", "::ffff:10.0.0.1", 80, uint64(5), "a", "10.0.0.1", 80, uint64(5), "c", "10.0.0.1", 81, uint64(5))
	f.Add("a", "2001:db8::1", 443, uint64(9), "a", "2001:db8::1", 443, uint64(9), "a", "2001:db8::2", 443, uint64(9))
	f.Add("x;y", "10.0.0.1;x", 0, uint64(0), "", "", 65536, uint64(1), "..", "fe80::1%eth0", -1, uint64(1<<63))
	f.Add("w\x00", "0.0.0.0", 1, uint64(0), "w\n", "224.0.0.1", 65535, uint64(0), strings.Repeat("i", MaxIDLen+1), "::", 8080, uint64(0))
	f.Fuzz(func(t *testing.T, id1, addr1 string, port1 int, idx1 uint64, id2, addr2 string, port2 int, idx2 uint64, id3, addr3 string, port3 int, idx3 uint64) {
		entries := []*api.ServiceEntry{
			created(entry(id1, "n", "", addr1, port1), idx1),
			created(entry(id2, "n", "", addr2, port2), idx2),
			created(entry(id3, "n", "", addr3, port3), idx3),
		}
		valid, invalid := FromEntries(entries)
		if len(valid)+len(invalid) != len(entries) {
			t.Fatalf("%d valid + %d invalid for %d entries", len(valid), len(invalid), len(entries))
		}
		if !slices.IsSortedFunc(valid, func(a, b Instance) int { return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Node, b.Node)) }) {
			t.Fatalf("valid instances not sorted: %+v", valid)
		}
		got := map[netip.AddrPort]string{}
		for _, inst := range valid {
			if ValidID(inst.ID) != nil || runtime.ValidAddr(inst.Addr) != nil || runtime.ValidPort(inst.Port) != nil || runtime.ValidWeight(inst.Weight) != nil {
				t.Fatalf("accepted an invalid instance %+v", inst)
			}
			if _, dup := got[inst.Endpoint()]; dup {
				t.Fatalf("endpoint %v given twice: %+v", inst.Endpoint(), valid)
			}
			got[inst.Endpoint()] = inst.ID
		}
		for _, inv := range invalid {
			if strings.IndexFunc(inv.ID+inv.Node+inv.Reason, unicode.IsControl) >= 0 {
				t.Fatalf("invalid entry %+v is not safe to log", inv)
			}
		}
		// Reference: each entry checked alone; per endpoint, the lowest
		// (CreateIndex, ID) wins.
		want := map[netip.AddrPort]*api.ServiceEntry{}
		for _, e := range entries {
			alone, _ := FromEntries([]*api.ServiceEntry{e})
			if len(alone) == 0 {
				continue
			}
			ep := alone[0].Endpoint()
			if w, ok := want[ep]; !ok || cmp.Or(cmp.Compare(e.Service.CreateIndex, w.Service.CreateIndex), strings.Compare(e.Service.ID, w.Service.ID)) < 0 {
				want[ep] = e
			}
		}
		if len(got) != len(want) {
			t.Fatalf("endpoints %v, want %d", got, len(want))
		}
		for ep, e := range want {
			if got[ep] != e.Service.ID {
				t.Fatalf("endpoint %v went to %q, want %q (registered first)", ep, got[ep], e.Service.ID)
			}
		}
	})
}

// FuzzDecodeHealth checks DecodeHealth (goccy/go-json) against
// encoding/json decoding the same fields, on any input: both refuse it, or
// both read the same values. (consul/api's decoding of every field also
// refuses a wrong type in a field hapctl does not read; DecodeHealth does
// not look at those.)
func FuzzDecodeHealth(f *testing.F) {
	f.Add([]byte(`[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Tags":["a"],"Address":"","Port":80,"Weights":{"Passing":3,"Warning":1},"CreateIndex":7},"Checks":[{"Status":"passing"}]}]`))
	f.Add([]byte(`[{"Service":{"ID":"a\u0000b\ud800","Port":-1,"Tags":null}},null,{}]`))
	f.Add([]byte(`[{"service":{"id":"lower","port":70000}}]`))
	f.Add([]byte(`[{"Service":{"Port":1e3}}]`))
	f.Add([]byte(`[{"Service":{"CreateIndex":18446744073709551616}}]`))
	f.Add([]byte(`[{"Node":{"Node":"x","Node":"y"}}] `))
	f.Fuzz(func(t *testing.T, body []byte) {
		var wire []wireEntry
		stdErr := json.Unmarshal(body, &wire)
		got, err := DecodeHealth(body)
		if (stdErr == nil) != (err == nil) {
			t.Fatalf("encoding/json says %v, DecodeHealth says %v", stdErr, err)
		}
		if want := fromWire(wire); err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded differently:\n got %s\nwant %s", dump(got), dump(want))
		}
	})
}

func dump(entries []*api.ServiceEntry) string {
	b, _ := json.Marshal(entries)
	return string(b)
}
