package runtime

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCommandBuilders(t *testing.T) {
	t.Parallel()
	v4 := netip.MustParseAddr("10.0.0.5")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name    string
		build   func() (Command, error)
		want    string
		wantErr string
	}{
		{"addr v4", func() (Command, error) { return SetAddr("be_web", "srv1", v4, 8080) }, "set server be_web/srv1 addr 10.0.0.5 port 8080", ""},
		{"addr v6", func() (Command, error) { return SetAddr("be_web", "srv2", v6, 443) }, "set server be_web/srv2 addr 2001:db8::1 port 443", ""},
		{"addr port 0", func() (Command, error) { return SetAddr("be_web", "srv1", v4, 0) }, "", "port 0 is out of range"},
		{"addr port 65536", func() (Command, error) { return SetAddr("be_web", "srv1", v4, 65536) }, "", "port 65536 is out of range"},
		{"addr unset", func() (Command, error) { return SetAddr("be_web", "srv1", netip.Addr{}, 80) }, "", "address is not set"},
		{"addr unspecified", func() (Command, error) { return SetAddr("be_web", "srv1", netip.IPv4Unspecified(), 80) }, "", "unspecified"},
		{"addr zone", func() (Command, error) {
			return SetAddr("be_web", "srv1", netip.MustParseAddr("fe80::1%eth0"), 80)
		}, "", "zone"},
		{"addr mapped", func() (Command, error) {
			return SetAddr("be_web", "srv1", netip.MustParseAddr("::ffff:10.0.0.1"), 80)
		}, "", "IPv4-mapped"},
		{"state ready", func() (Command, error) { return SetState("be_web", "srv3", StateReady) }, "set server be_web/srv3 state ready", ""},
		{"state drain", func() (Command, error) { return SetState("be.web-2:x", "srv3", StateDrain) }, "set server be.web-2:x/srv3 state drain", ""},
		{"state invalid", func() (Command, error) { return SetState("be_web", "srv3", State(9)) }, "", "not ready, drain or maint"},
		{"weight", func() (Command, error) { return SetWeight("be_web", "srv3", 256) }, "set server be_web/srv3 weight 256", ""},
		{"weight 0", func() (Command, error) { return SetWeight("be_web", "srv3", 0) }, "set server be_web/srv3 weight 0", ""},
		{"weight 257", func() (Command, error) { return SetWeight("be_web", "srv3", 257) }, "", "weight 257 is out of range"},
		{"backend with semicolon", func() (Command, error) { return SetState("be;shutdown", "srv1", StateReady) }, "", "backend: name \"be;shutdown\" has character ';'"},
		{"server with space", func() (Command, error) { return SetWeight("be_web", "srv1 x", 1) }, "", "server: name \"srv1 x\" has character ' '"},
		{"server with slash", func() (Command, error) { return SetWeight("be_web", "a/b", 1) }, "", "has character '/'"},
		{"server with newline", func() (Command, error) { return SetWeight("be_web", "a\nshow info", 1) }, "", "has character '\\n'"},
		{"empty backend", func() (Command, error) { return ShowServersState("") }, "", "backend: name is empty"},
		{"long name", func() (Command, error) { return ShowServersState(strings.Repeat("b", 129)) }, "", "more than 128"},
		{"show state", func() (Command, error) { return ShowServersState("be_web") }, "show servers state be_web", ""},
		{"add v4", func() (Command, error) {
			return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 80), 3, " check  inter 2s ")
		}, "add server be_web/srv9 10.0.0.5:80 weight 3 check inter 2s", ""},
		{"add v6 no options", func() (Command, error) {
			return AddServer("be_web", "srv9", netip.AddrPortFrom(v6, 443), 1, "")
		}, "add server be_web/srv9 [2001:db8::1]:443 weight 1", ""},
		{"add port 0", func() (Command, error) { return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 0), 1, "") }, "", "port 0"},
		{"add weight 300", func() (Command, error) { return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 80), 300, "") }, "", "weight 300"},
		{"add options with ;", func() (Command, error) {
			return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 80), 1, "check; shutdown sessions")
		}, "", "options must be plain words"},
		{"add options with newline", func() (Command, error) {
			return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 80), 1, "check\nshow info")
		}, "", "non-printable"},
		{"add options owning weight", func() (Command, error) {
			return AddServer("be_web", "srv9", netip.AddrPortFrom(v4, 80), 1, "weight 5")
		}, "", "\"weight\" is not allowed"},
		{"del", func() (Command, error) { return DelServer("be_web", "srv9") }, "del server be_web/srv9", ""},
		{"del bad name", func() (Command, error) { return DelServer("be_web", "srv9;") }, "", "has character ';'"},
		{"enable health", func() (Command, error) { return EnableHealth("be_web", "srv9") }, "enable health be_web/srv9", ""},
		{"enable agent", func() (Command, error) { return EnableAgent("be_web", "srv9") }, "enable agent be_web/srv9", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := tt.build()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if !cmd.IsZero() {
					t.Fatalf("failed builder returned a usable command %q", cmd)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if cmd.String() != tt.want {
				t.Fatalf("command = %q, want %q", cmd, tt.want)
			}
		})
	}
}

func TestAnswerChecks(t *testing.T) {
	t.Parallel()
	addr, _ := SetAddr("b", "s", netip.MustParseAddr("10.0.0.1"), 80)
	state, _ := SetState("b", "s", StateReady)
	show, _ := ShowServersState("b")
	add, _ := AddServer("b", "s", netip.MustParseAddrPort("10.0.0.1:80"), 1, "")
	del, _ := DelServer("b", "s")
	tests := []struct {
		name   string
		cmd    Command
		answer string
		want   error // nil, or the sentinel the error must wrap
	}{
		{"addr changed", addr, "IP changed from '127.0.0.1' to '10.0.0.1', port changed from '1' to '80' by 'stats socket command'", nil},
		{"addr same", addr, "no need to change the addr, no need to change the port by 'stats socket command'", nil},
		{"addr invalid", addr, "Invalid addr 'localhost' by 'stats socket command'", ErrRefused},
		{"addr no server", addr, "No such server.", ErrNoSuchServer},
		{"addr no backend", addr, "No such backend.", ErrNoSuchBackend},
		{"state ok", state, "", nil},
		{"state bad", state, "'set server <srv> state' expects 'ready', 'drain' and 'maint'.", ErrRefused},
		{"state unknown command", state, "Unknown command, but maybe one of the following ones is a better match:\n  add acl", ErrRefused},
		{"state permission", state, "Permission denied", ErrRefused},
		{"show ok", show, "1\n# be_id be_name", nil},
		{"show no backend", show, "Can't find backend.", ErrNoSuchBackend},
		{"add ok", add, "New server registered.\n", nil},
		{"add static", add, "Backend must use a dynamic load balancing to support dynamic servers.", ErrNotDynamic},
		{"add cookie", add, "'cookie' option is not accepted for dynamic server", ErrNotDynamic},
		{"add exists", add, "Already exists a server with the same name in backend.", ErrServerExists},
		{"add other error", add, "Invalid address '1.2.3'", ErrRefused},
		{"del ok", del, "Server deleted.", nil},
		{"del busy", del, "Server still has connections attached to it, cannot remove it.", ErrServerBusy},
		{"del ready", del, "Only servers in maintenance mode can be deleted.", ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cmd.check(tt.answer)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("check(%q) = %v, want nil", tt.answer, err)
				}
				return
			}
			if !errorsIs(err, tt.want) {
				t.Fatalf("check(%q) = %v, want %v", tt.answer, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.cmd.String()) {
				t.Fatalf("error %q does not name the command", err)
			}
		})
	}
}

// FuzzCommands checks that whatever the inputs, a command either fails to
// build or is exactly one line of single-space separated, safe tokens that
// round-trip the validated values.
func FuzzCommands(f *testing.F) {
	f.Add("be_web", "srv1", "10.0.0.1", 80, 1)
	f.Add("be_web", "srv1", "2001:db8::5", 65535, 256)
	f.Add("be;web", "srv1", "10.0.0.1;shutdown sessions", 80, 1)
	f.Add("be_web", "srv 1", "10.0.0.1\nshow info", 0, -1)
	f.Add("be_web", "srv1", "localhost", 70000, 300)
	f.Add("be_web\r", "srv1", "::ffff:1.2.3.4", 1, 0)
	f.Add("", "", "", 0, 0)
	f.Add("b", "s", "fe80::1%eth0", 443, 10)
	f.Fuzz(func(t *testing.T, backend, server, addrText string, port, weight int) {
		addr, _ := netip.ParseAddr(addrText)
		check := func(cmd Command, err error, fields int) {
			if err != nil {
				if !cmd.IsZero() {
					t.Fatalf("error %v with a non-zero command %q", err, cmd)
				}
				return
			}
			s := cmd.String()
			if strings.ContainsAny(s, ";\n\r\t\x00#") {
				t.Fatalf("unsafe byte in %q", s)
			}
			if got := strings.Split(s, " "); len(got) != fields {
				t.Fatalf("%q has %d tokens, want %d", s, len(got), fields)
			}
			if ValidName(backend) != nil || ValidName(server) != nil {
				t.Fatalf("built %q from invalid names %q %q", s, backend, server)
			}
			if !strings.Contains(s+" ", " "+backend+"/"+server+" ") {
				t.Fatalf("%q does not name %s/%s", s, backend, server)
			}
		}
		cmd, err := SetAddr(backend, server, addr, port)
		check(cmd, err, 7)
		if err == nil && (port < 1 || port > 65535 || ValidAddr(addr) != nil) {
			t.Fatalf("SetAddr accepted addr %v port %d", addr, port)
		}
		cmd, err = SetWeight(backend, server, weight)
		check(cmd, err, 5)
		if err == nil && (weight < 0 || weight > 256) {
			t.Fatalf("SetWeight accepted %d", weight)
		}
		cmd, err = SetState(backend, server, State(weight&7))
		check(cmd, err, 5)
		cmd, err = AddServer(backend, server, netip.AddrPortFrom(addr, uint16(port)), weight, addrText)
		if err == nil {
			s := cmd.String()
			if strings.ContainsAny(s, ";\n\r\t\x00#\\\"'") || ValidOptions(addrText) != nil {
				t.Fatalf("AddServer built %q from options %q", s, addrText)
			}
			if !strings.HasPrefix(s, "add server "+backend+"/"+server+" ") {
				t.Fatalf("%q does not name %s/%s", s, backend, server)
			}
		}
		cmd, err = DelServer(backend, server)
		check(cmd, err, 3)
	})
}
