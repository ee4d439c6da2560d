package runtime

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseServersStateRecorded(t *testing.T) {
	t.Parallel()
	// Recorded from HAProxy 2.6.12 after: srv1 set to [::1]:8443 weight 42
	// (ready, "disabled" in the config), srv2 drained, srv3 untouched.
	got, err := ParseServersState(strings.TrimRight(readTestdata(t, "servers-state.txt"), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []ServerState{
		{Backend: "be_web", Name: "srv1", ID: 1, Addr: netip.MustParseAddr("::1"), Port: 8443, Admin: 4, Op: OpStopped, Weight: 42},
		{Backend: "be_web", Name: "srv2", ID: 2, Addr: netip.MustParseAddr("127.0.0.1"), Port: 1, Admin: 12, Op: OpRunning, Weight: 1},
		{Backend: "be_web", Name: "srv3", ID: 3, Addr: netip.MustParseAddr("127.0.0.1"), Port: 1, Admin: 5, Op: OpStopped, Weight: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	states := []State{got[0].State(), got[1].State(), got[2].State()}
	if !reflect.DeepEqual(states, []State{StateReady, StateDrain, StateMaint}) {
		t.Fatalf("states = %v", states)
	}
	if e := got[0].Endpoint(); e != "[::1]:8443" {
		t.Fatalf("endpoint = %q", e)
	}
}

func TestParseServersStateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"not version 1", "Can't find backend.", "want format version 1"},
		{"no header", "1\n3 be 1 srv1", "missing header"},
		{"missing column", "1\n# be_id be_name srv_id\n3 be 1", "no srv_name column"},
		{"short row", "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 be", "fewer than the header"},
		{"bad number", "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 be x srv1 1.2.3.4 2 0 1 80", "srv_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseServersState(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want ErrProtocol containing %q", err, tt.want)
			}
		})
	}
	if s, err := ParseServersState("1"); err != nil || s != nil {
		t.Fatalf("empty answer: %v %v", s, err)
	}
}

func TestAdminFlagsState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flags AdminFlags
		want  State
	}{
		{0, StateReady},
		{AdminConfigMaint, StateReady}, // "disabled" in the config, then set ready
		{AdminForcedMaint | AdminConfigMaint, StateMaint},
		{AdminForcedDrain | AdminConfigMaint, StateDrain},
		{AdminForcedDrain, StateDrain},
		{AdminForcedMaint | AdminForcedDrain, StateMaint},
		{AdminInheritedMaint, StateMaint},
		{AdminInheritedDrain, StateDrain},
		{AdminResolverMaint, StateMaint},
		{0x40, StateReady}, // HMAINT: fqdn set at runtime, no effect on traffic
	}
	for _, tt := range tests {
		if got := tt.flags.State(); got != tt.want {
			t.Errorf("AdminFlags(%#x).State() = %v, want %v", uint16(tt.flags), got, tt.want)
		}
	}
}

func TestParseInfoRecorded(t *testing.T) {
	t.Parallel()
	in, err := ParseInfo(readTestdata(t, "show-info.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Pid <= 0 || !strings.HasPrefix(in.Version, "2.6.") {
		t.Fatalf("info = %+v", in)
	}
	if _, err := ParseInfo("Unknown command"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage: err = %v", err)
	}
}

func TestParseShowProcRecorded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		want    Procs
		current int
	}{
		{"show-proc.txt", Procs{
			Master:  Proc{PID: 2132, Type: "master", Reloads: 1},
			Workers: []Proc{{PID: 2164, Type: "worker"}},
		}, 2164},
		// After a reload that failed: the old worker lives on, counting 1 reload.
		{"show-proc-failed.txt", Procs{
			Master:  Proc{PID: 2132, Type: "master", Reloads: 4, Failed: 1},
			Workers: []Proc{{PID: 12749, Type: "worker", Reloads: 1}},
		}, 12749},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			got, err := ParseShowProc(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			if cur, ok := got.Current(); !ok || cur.PID != tt.current {
				t.Fatalf("current = %v %v, want %d", cur, ok, tt.current)
			}
		})
	}
	if _, err := ParseShowProc("Unknown command."); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage: err = %v", err)
	}
}

func TestStateText(t *testing.T) {
	t.Parallel()
	for _, s := range []State{StateReady, StateDrain, StateMaint} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("round trip of %v: %v %v", s, back, err)
		}
	}
	if _, err := State(0).MarshalText(); err == nil {
		t.Fatal("zero state marshalled")
	}
	if _, err := ParseState("up"); err == nil {
		t.Fatal("parsed \"up\"")
	}
}

func TestParseRefusesValuesHAProxyNeverWrites(t *testing.T) {
	t.Parallel()
	row := func(name, op, admin, weight, port string) string {
		return "1\n" + stateHeader + "\n" + strings.Join([]string{"3", "be_web", "1", name, "10.0.0.1", op, admin, weight,
			"1", "0", "1", "0", "0", "0", "0", "0", "0", "-", port, "-", "0", "0", "-", "-", "0"}, " ") + "\n"
	}
	if _, err := ParseServersState(row("srv1", "2", "0", "1", "80")); err != nil {
		t.Fatalf("a good row: %v", err)
	}
	for _, bad := range []string{
		row("s;x", "2", "0", "1", "80"), row("s\x00", "2", "0", "1", "80"), row("srv1", "300", "0", "1", "80"),
		row("srv1", "2", "70000", "1", "80"), row("srv1", "2", "0", "-1", "80"), row("srv1", "2", "0", "1", "99999"),
		row("srv1", "2", "0", "1", "-5"),
	} {
		if got, err := ParseServersState(bad); err == nil || !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: %+v, %v; want ErrProtocol", bad, got, err)
		}
	}
	for _, bad := range []string{"# pxname,svname,qcur,qmax,scur\nbe,srv1,1,0,-1\n", "# pxname,svname,qcur,qmax,scur\nbe,srv1,1,0,9223372036854775807\n"} {
		if got, err := ParseSessions(bad); err == nil {
			t.Errorf("%q: %v accepted", bad, got)
		}
	}
}
