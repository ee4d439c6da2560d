package config

import (
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haproxytech/client-native/v5/config-parser/params"
	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// FuzzParse feeds arbitrary YAML and environment through Parse and checks
// that an accepted config keeps every promise the rest of hapctl relies
// on: it validates again, its names and options make runtime commands and
// drain keys, and no value holds a control character.
func FuzzParse(f *testing.F) {
	full := fullExample
	f.Add([]byte(minimal), "", "", "")
	f.Add([]byte(full), "10.1.1.1:8500", "envtok", "apitok")
	f.Add([]byte("api:\n  listen: unix:/run/hapctl.sock\n"+minimal), "unix:///run/consul.sock", "", "")
	f.Add([]byte("api:\n  listen: \"[::1]:9680\"\n"+minimal+"  - name: be:web.v2-x\n    service: api\n    min_slots: 4\n    max_slots: 4\n"), "", "", "")
	f.Add([]byte("consul:\n  address: \"\"\n  token: \"\"\napi:\n  listen: 0.0.0.0:9680\n  token: \"\"\n"+minimal), "[2001:db8::1]:8500", "t", "t")
	f.Add([]byte("api:\n  listen: unix:/run/h.sock\n  token: \"a\\nb\"\n"+minimal), "", "", "")
	f.Add([]byte(minimal), "127.0.0.1:8500\n", "tok\x00en", "tok\r\n")
	f.Add([]byte("consul:\n  address: \"unix://a\\nb\"\n"+minimal), "", "", "")
	f.Add([]byte("backends:\n  - name: \"be;x\"\n    service: \"web\\n\"\n    tags: [\"\\t\", \"\"]\n    server_options: \"check # x\\nserver evil 1.2.3.4:80\"\n"), "", "", "")
	f.Add([]byte(minimal+"    min_slots: 99999999999999999999\n    max_slots: -1\n    removal_grace: -1s\n    shrink_after: 9999999h\n"), "", "", "")
	f.Add([]byte(minimal+"    server_options: \"  check   inter 2s  \"\n    growth: reload\n"), "", "", "")
	f.Add([]byte("a: &a [*a, *a]\nbackends: *a\n"), "", "", "")
	f.Add([]byte("backends:\n  - name: be_web\n    service: web\n    tags: [\"\xff\xfe\"]\n"), "", "", "")
	f.Add([]byte("backends:\n  - {name: "+strings.Repeat("b", runtime.MaxNameLen+1)+", service: web}\n"), "", "", "")
	f.Add([]byte("---\n---\n"+minimal), "", "", "")
	f.Add([]byte{}, "", "", "")
	f.Fuzz(func(t *testing.T, data []byte, consulAddr, consulToken, apiToken string) {
		getenv := func(k string) string {
			return map[string]string{"CONSUL_HTTP_ADDR": consulAddr, "CONSUL_HTTP_TOKEN": consulToken, "HAPCTL_TOKEN": apiToken}[k]
		}
		cfg, err := Parse(data, getenv)
		if err != nil {
			if cfg != nil {
				t.Fatalf("config %+v with error %v", cfg, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate again: %v", err)
		}
		for key, v := range map[string]string{
			"consul.datacenter": cfg.Consul.Datacenter, "consul.token": cfg.Consul.Token,
			"haproxy.config_file": cfg.HAProxy.ConfigFile, "haproxy.runtime_socket": cfg.HAProxy.RuntimeSocket,
			"haproxy.master_socket": cfg.HAProxy.MasterSocket, "haproxy.state_file": cfg.HAProxy.StateFile,
			"haproxy.binary": cfg.HAProxy.Binary, "api.listen": cfg.API.Listen,
			"consul.address": cfg.Consul.Address, "api.token": cfg.API.Token,
		} {
			if hasControl(v) {
				t.Fatalf("%s %q holds a control character", key, v)
			}
		}
		if cfg.HAProxy.ReloadMinInterval < 0 {
			t.Fatalf("negative reload_min_interval %v", cfg.HAProxy.ReloadMinInterval)
		}
		checkListen(t, cfg.API)
		checkKVPrefix(t, cfg.Consul.KVPrefix, cfg.Backends)
		if len(cfg.Backends) == 0 {
			t.Fatal("accepted without backends")
		}
		names := map[string]bool{}
		for _, b := range cfg.Backends {
			if names[b.Name] {
				t.Fatalf("backend %q twice", b.Name)
			}
			names[b.Name] = true
			checkBackend(t, b)
		}
	})
}

// checkBackend checks one accepted backend: its values are in range, and
// every slot it may have can be added at runtime with its options.
func checkBackend(t *testing.T, b Backend) {
	t.Helper()
	if runtime.ValidName(b.Name) != nil || !isIdent(b.Service, "_.-") || len(b.Service) > 255 {
		t.Fatalf("backend %q: bad name or service %q", b.Name, b.Service)
	}
	for _, tag := range b.Tags {
		if tag == "" || len(tag) > 255 || hasControl(tag) {
			t.Fatalf("backend %s: tag %q", b.Name, tag)
		}
	}
	if b.MinSlots < 1 || b.MinSlots > b.MaxSlots || b.MaxSlots > MaxSlotsLimit || MaxSlotsLimit > slot.MaxIndex {
		t.Fatalf("backend %s: slots %d-%d", b.Name, b.MinSlots, b.MaxSlots)
	}
	if b.RemovalGrace < 0 || b.ShrinkAfter < 0 || (b.Growth != GrowthDynamic && b.Growth != GrowthReload) {
		t.Fatalf("backend %s: %+v", b.Name, b)
	}
	if b.ServerOptions != strings.TrimSpace(b.ServerOptions) {
		t.Fatalf("backend %s: server_options %q not trimmed", b.Name, b.ServerOptions)
	}
	cmd, err := runtime.AddServer(b.Name, slot.Name(b.MaxSlots), slot.PlaceholderEndpoint, 1, b.ServerOptions)
	if err != nil {
		t.Fatalf("backend %s: no add server for its last slot: %v", b.Name, err)
	}
	if strings.ContainsAny(cmd.String(), "\n\r;#\x00") {
		t.Fatalf("backend %s: unsafe command %q", b.Name, cmd)
	}
	if _, err := runtime.ShowServersState(b.Name); err != nil {
		t.Fatalf("backend %s: %v", b.Name, err)
	}
	if !clientNativeReads(b.ServerOptions) {
		t.Fatalf("backend %s: client-native's parser does not finish server_options %q", b.Name, b.ServerOptions)
	}
}

// FuzzCheckServerOptions checks that client-native's parser, which loops
// forever on a server keyword it cannot read (haproxycfg.Parse), reads
// every slot line whose server_options CheckServerOptions accepts.
func FuzzCheckServerOptions(f *testing.F) {
	for _, s := range []string{
		"check inter 2s", "check inter", "inter", "check(x", "check inter(2s) fall 3", "sni req.hdr(host) check",
		"set-proxy-v2-tlv-fmt(0x20) %[fc_pp_unique_id]", "set-proxy-v2-tlv-fmt x", "cookie inter check",
		"source 10.0.0.1 usesrc client interface eth0", "ssl verify none sni", "maxconn 10 rise", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		if CheckServerOptions(opts) != nil {
			return
		}
		if !clientNativeReads(opts) {
			t.Fatalf("accepted %q, which client-native's parser does not finish", opts)
		}
	})
}

// clientNativeReads reports whether client-native's parser finishes the
// options of a slot line, as a free slot's line and as a bound one's carry
// them, within a few seconds. (When it does not, the goroutine stays
// spinning: the test fails anyway.)
func clientNativeReads(opts string) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		params.ParseServerOptions(append([]string{"disabled"}, strings.Fields(opts)...))
		params.ParseServerOptions(append([]string{"disabled", "weight", "1"}, strings.Fields(opts)...))
	}()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// checkListen checks the admin API address: a unix socket path, or a
// host:port whose port is in range and which binds loopback unless a token
// is set.
func checkListen(t *testing.T, a API) {
	t.Helper()
	if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
		if path == "" {
			t.Fatalf("api.listen %q has no path", a.Listen)
		}
		return
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		t.Fatalf("api.listen %q: %v", a.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || runtime.ValidPort(p) != nil {
		t.Fatalf("api.listen %q: port %q", a.Listen, port)
	}
	if a.Token == "" {
		ip, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !ip.IsLoopback()) {
			t.Fatalf("api.listen %q is not loopback and has no token", a.Listen)
		}
	}
}

// checkKVPrefix checks that drains of every backend can be written under
// the prefix and read back.
func checkKVPrefix(t *testing.T, prefix string, backends []Backend) {
	t.Helper()
	if prefix == "" || strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") || strings.Contains(prefix, "//") {
		t.Fatalf("kv_prefix %q", prefix)
	}
	o := consul.Override{State: runtime.StateDrain, Reason: "fuzz", At: time.Unix(1, 0).UTC()}
	value, _ := json.Marshal(o)
	var pairs api.KVPairs
	for _, b := range backends {
		key, err := consul.DrainKey(prefix, b.Name, "web-1")
		if err != nil {
			t.Fatalf("kv_prefix %q, backend %s: %v", prefix, b.Name, err)
		}
		pairs = append(pairs, &api.KVPair{Key: key, Value: value})
	}
	drains, errs := consul.ParseDrains(prefix, pairs)
	if len(errs) != 0 || len(drains) != len(backends) {
		t.Fatalf("kv_prefix %q: drains read back as %v, %v", prefix, drains, errs)
	}
}
