package app

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/api"
	hconsul "github.com/hapctl/hapctl/internal/consul"
	"github.com/hapctl/hapctl/internal/runtime"
)

func TestResolveServer(t *testing.T) {
	t.Parallel()
	server := func(name, addr string, port int, admin runtime.AdminFlags) runtime.ServerState {
		return runtime.ServerState{Backend: "be_web", Name: name, Addr: netip.MustParseAddr(addr), Port: port, Admin: admin, Weight: 1}
	}
	servers := []runtime.ServerState{
		server("srv1", "10.0.0.1", 80, 0),
		server("srv2", "10.0.0.2", 80, runtime.AdminForcedDrain),
		server("srv3", "10.0.0.3", 80, 0),                        // its instance left Consul
		server("srv4", "127.0.0.1", 1, runtime.AdminForcedMaint), // free
		server("srv5", "2001:db8::1", 80, 0),
		server("web_static", "10.0.0.99", 80, 0), // a user's server, not a slot
	}
	inst := func(id, addr string) hconsul.Instance {
		return hconsul.Instance{ID: id, Addr: netip.MustParseAddr(addr), Port: 80, Weight: 1}
	}
	snap := hconsul.Snapshot{Instances: []hconsul.Instance{inst("web-1", "10.0.0.1"), inst("web-2", "10.0.0.2"),
		inst("web-6", "2001:db8::1"), inst("web-9", "10.0.0.9")}}
	overrides := hconsul.Overrides{"web-2": {State: runtime.StateDrain}, "web-gone": {State: runtime.StateMaint}}
	bd := bind(servers, snap)
	tests := []struct {
		server, action string
		want           target
		status         int
		msg            string
	}{
		{"srv1", "drain", target{id: "web-1", slot: "srv1", endpoint: "10.0.0.1:80"}, 0, ""},
		{"10.0.0.2:80", "undrain", target{id: "web-2", slot: "srv2", endpoint: "10.0.0.2:80"}, 0, ""},
		{"[2001:db8::1]:80", "maint", target{id: "web-6", slot: "srv5", endpoint: "[2001:db8::1]:80"}, 0, ""},
		{"web-1", "maint", target{id: "web-1", slot: "srv1", endpoint: "10.0.0.1:80"}, 0, ""},
		// An instance without a slot can be drained: the drain waits for it.
		{"web-9", "drain", target{id: "web-9", endpoint: "10.0.0.9:80"}, 0, ""},
		// A drain whose instance is gone can still be lifted, by ID only.
		{"web-gone", "undrain", target{id: "web-gone"}, 0, ""},
		{"web-gone", "drain", target{}, 404, "no server \"web-gone\""},
		{"srv4", "drain", target{}, 409, "server srv4 of be_web is free: nothing to drain"},
		{"srv3", "maint", target{}, 409, "no passing instance"},
		{"srv99", "drain", target{}, 404, "backend be_web has no server srv99"},
		{"10.0.0.7:80", "drain", target{}, 404, "no passing instance at 10.0.0.7:80"},
		{"web_static", "drain", target{}, 404, "give a slot name"},
		{"../../etc/passwd", "drain", target{}, 404, `"../../etc/passwd"`},
		{"a\nb", "drain", target{}, 404, `"a\nb"`},
	}
	for _, tt := range tests {
		got, err := resolve("be_web", tt.server, tt.action, bd, overrides)
		if tt.status == 0 {
			if err != nil || got != tt.want {
				t.Errorf("resolve(%q) = %+v, %v; want %+v", tt.server, got, err, tt.want)
			}
			continue
		}
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("resolve(%q) error = %v; want %d with %q", tt.server, err, tt.status, tt.msg)
		}
	}
}
