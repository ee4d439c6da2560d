package runtime

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// stateHeader is the header of `show servers state` as HAProxy 2.6 writes it.
const stateHeader = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight " +
	"srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state " +
	"bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"

// FuzzParseServersState checks that any answer either fails as a protocol
// error or gives one row per data line, each with a backend and a name that
// are single tokens and an unmapped address.
func FuzzParseServersState(f *testing.F) {
	f.Add("1\n" + stateHeader + "\n3 be_web 1 srv1 ::1 0 4 42 1 135 8 2 0 6 0 0 0 - 8443 - 0 0 - - 0\n")
	f.Add("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 be 1 srv1 ::ffff:10.0.0.1 2 0 1 80\n# comment\n\n")
	f.Add("1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nb;shutdown 1 s\x00 fe80::1%eth0 2 0 1 80")
	f.Add("1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nb 99999999999999999999 s 1.2.3.4 2 0 1 80")
	f.Add("1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nb -1 s 1.2.3.4 -2 -3 -4 -5")
	f.Add("1\r\n# be_name\r\n")
	f.Add("1\n# \n   \n")
	f.Add("Can't find backend.\n")
	f.Add("")
	f.Add("1")
	f.Add("1\n" + stateHeader + "\n3 be_web 1 " + strings.Repeat("x", 4096) + " \xff\xfe 0 4 42\n")
	f.Fuzz(func(t *testing.T, answer string) {
		rows, err := ParseServersState(answer)
		if err != nil {
			if !errors.Is(err, ErrProtocol) || rows != nil {
				t.Fatalf("error %v (rows %v) is not a bare ErrProtocol", err, rows)
			}
			return
		}
		lines := strings.Split(strings.TrimRight(answer, "\n"), "\n")
		want := 0
		for _, l := range lines[min(2, len(lines)):] {
			if l != "" && l[0] != '#' {
				want++
			}
		}
		if len(rows) != want {
			t.Fatalf("%d rows from %d data lines", len(rows), want)
		}
		for _, r := range rows {
			if !singleToken(r.Backend) || !singleToken(r.Name) {
				t.Fatalf("row %+v: backend or name is not one token", r)
			}
			if r.Addr.Is4In6() {
				t.Fatalf("row %+v: address left IPv4-mapped", r)
			}
			for _, n := range []string{r.Backend, r.Name} {
				if strings.IndexFunc(n, func(c rune) bool { return c > 127 || !isNameByte(byte(c)) }) >= 0 {
					t.Fatalf("row %+v: name %q outside HAProxy's identifier characters", r, n)
				}
			}
			if r.Port < 0 || r.Port > 65535 || r.Weight < 0 || r.Weight > MaxWeight || r.Op > 3 {
				t.Fatalf("row %+v: value out of range", r)
			}
		}
	})
}

// FuzzServersStateRoundTrip renders one row in HAProxy's format and checks
// that ParseServersState reads back every value.
func FuzzServersStateRoundTrip(f *testing.F) {
	f.Add("be_web", "srv1", 1, "10.0.0.1", 8080, uint16(0), uint8(2), 1)
	f.Add("be_web", "srv2", 2, "2001:db8::5", 65535, uint16(0x0c), uint8(0), 256)
	f.Add("be.web:1", "srv-3_x", 1<<40, "::ffff:192.0.2.1", 0, uint16(0xffff), uint8(255), -1)
	f.Add("b", "s", -7, "fe80::1%eth0", -1, uint16(0x40), uint8(3), 1<<62)
	f.Add("b", "s", 0, "-", 1, uint16(0), uint8(0), 0)
	f.Fuzz(func(t *testing.T, backend, name string, id int, addrText string, port int, admin uint16, op uint8, weight int) {
		if ValidName(backend) != nil || ValidName(name) != nil {
			return // HAProxy writes only valid names
		}
		addr, err := netip.ParseAddr(addrText)
		addr = addr.WithZone("") // HAProxy writes no zone, and a zone may hold spaces
		addrText = "-"
		if err == nil {
			addrText = addr.String()
		}
		row := strings.Join([]string{"3", backend, strconv.Itoa(id), name, addrText, strconv.Itoa(int(op)),
			strconv.Itoa(int(admin)), strconv.Itoa(weight), "1", "0", "1", "0", "0", "0", "0", "0", "0", "-",
			strconv.Itoa(port), "-", "0", "0", "-", "-", "0"}, " ")
		got, err := ParseServersState("1\n" + stateHeader + "\n" + row + "\n")
		if inRange := port >= 0 && port <= 65535 && weight >= 0 && weight <= MaxWeight && op <= 3 && admin <= 0xff; !inRange {
			if err == nil {
				t.Fatalf("row %q with values HAProxy never writes accepted: %+v", row, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("row %q: %v", row, err)
		}
		want := []ServerState{{Backend: backend, Name: name, ID: id, Addr: addr.Unmap(), Port: port,
			Admin: AdminFlags(admin), Op: OpState(op), Weight: weight}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("row %q:\n got  %+v\n want %+v", row, got, want)
		}
	})
}

// FuzzParseInfo checks that `show info` parses exactly when it has a Pid,
// and that a later Pid or Version line wins without disturbing the rest.
func FuzzParseInfo(f *testing.F) {
	f.Add("Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 2164\nUptime: 0d 0h05m00s\nUptime_sec: 300\n")
	f.Add("Pid: -1\nUptime_sec: 99999999999999999999999\nVersion: a: b")
	f.Add("Pid: 0\n")
	f.Add("Pid:12\nPid : 13\n")
	f.Add("Pid: 1\r\nVersion: x\r\n")
	f.Add("Version: 2.8\x00;show info\nPid: 1")
	f.Add("Unknown command.\n")
	f.Add("")
	f.Add("Pid: 7\nVersion: " + strings.Repeat("\xff", 300))
	f.Fuzz(func(t *testing.T, answer string) {
		in, err := ParseInfo(answer)
		if (err == nil) != (in.Pid != 0) {
			t.Fatalf("ParseInfo = %+v, %v: an error exactly when there is no Pid", in, err)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v is not ErrProtocol", err)
		}
		if strings.Contains(in.Version, "\n") {
			t.Fatalf("version %q spans lines", in.Version)
		}
		more, err := ParseInfo(answer + "\nPid: 4242\nVersion: fuzz\n")
		if err != nil {
			t.Fatal(err)
		}
		if want := (Info{Pid: 4242, UptimeSec: in.UptimeSec, Version: "fuzz"}); more != want {
			t.Fatalf("with a Pid and Version appended: %+v, want %+v", more, want)
		}
	})
}

// FuzzParseSessions checks `show stat` parsing: names are single CSV
// fields, and a row appended in the header's own layout is read back with
// scur+qcur while every other server keeps its count.
func FuzzParseSessions(f *testing.F) {
	f.Add("# pxname,svname,qcur,qmax,scur,smax,\nbe_web,srv1,0,0,3,9,\nbe_web,srv2,2,0,,9,\nbe_web,BACKEND,0,0,3,9,\n")
	f.Add("# svname,scur,qcur\nsrv1,-1,1\n")
	f.Add("# svname,scur,qcur\nsrv1,9223372036854775807,1\n")
	f.Add("# svname,scur,qcur\nsrv1,1\n")
	f.Add("# svname,scur,qcur\r\nsrv1,1,1\r\n")
	f.Add("# qcur,scur,svname,qcur\nx,1,srv;1\x00,2\n\n")
	f.Add("# pxname,svname\n")
	f.Add("No such backend.")
	f.Add("")
	f.Fuzz(func(t *testing.T, answer string) {
		out, err := ParseSessions(answer)
		if err != nil {
			if !errors.Is(err, ErrProtocol) || out != nil {
				t.Fatalf("error %v (out %v) is not a bare ErrProtocol", err, out)
			}
			return
		}
		for name := range out {
			if strings.ContainsAny(name, ",\n") {
				t.Fatalf("server name %q holds a separator", name)
			}
			if n := out[name]; n < 0 || n > 2*maxSessions {
				t.Fatalf("server %q: %d sessions", name, n)
			}
		}
		const probe = "hapctl-fuzz-probe"
		header, _, _ := strings.Cut(answer, "\n")
		col := map[string]int{}
		names := strings.Split(strings.TrimPrefix(header, "# "), ",")
		for i, name := range names {
			col[name] = i
		}
		row := make([]string, len(names))
		row[col["svname"]], row[col["scur"]], row[col["qcur"]] = probe, "3", "4"
		more, err := ParseSessions(strings.TrimRight(answer, "\n") + "\n" + strings.Join(row, ",") + "\n")
		if err != nil {
			t.Fatalf("with a row appended: %v", err)
		}
		out[probe] = 7 // a later row wins
		if !reflect.DeepEqual(more, out) {
			t.Fatalf("with a row appended: %v, want %v", more, out)
		}
	})
}

// FuzzParseShowProc checks that an accepted `show proc` has a master and
// that Current picks a worker with the fewest reloads.
func FuzzParseShowProc(f *testing.F) {
	f.Add("#<PID>          <type>          <reloads>       <uptime>        <version>      \n" +
		"2132            master          4 [failed: 1]   0d00h05m20s     2.6.12-1+deb12u4\n# workers\n" +
		"12749           worker          1               0d00h00m04s     2.6.12-1+deb12u4\n# programs\n\n")
	f.Add("1 master 0\n# workers\n2 worker 3\n3 worker 1\n4 worker 1\n# programs\n5 program 0\n")
	f.Add("-1 master -1 [failed: -1]\n0 worker 0\n")
	f.Add("1 master 99999999999999999999 [failed: 99999999999999999999]\n")
	f.Add("1 master 0 [failed: ]\n1 master 0 [failed: 2\n")
	f.Add("0 master 0\n")
	f.Add("1\tmaster\t0\r\n# workers\r\n2\tworker\t0\r\n")
	f.Add("Unknown command.")
	f.Add("")
	f.Fuzz(func(t *testing.T, answer string) {
		p, err := ParseShowProc(answer)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if p.Master.PID == 0 || p.Master.Type != "master" {
			t.Fatalf("accepted without a master: %+v", p)
		}
		for _, w := range p.Workers {
			if !singleToken(w.Type) || w.Type == "master" {
				t.Fatalf("worker %+v has a bad type", w)
			}
		}
		cur, ok := p.Current()
		if ok != (len(p.Workers) > 0) {
			t.Fatalf("Current = %v with %d workers", ok, len(p.Workers))
		}
		for _, w := range p.Workers {
			if w.Reloads < cur.Reloads {
				t.Fatalf("current worker %+v, but %+v has fewer reloads", cur, w)
			}
		}
	})
}

// FuzzShowProcRoundTrip renders `show proc` as HAProxy does and checks that
// every value is read back.
func FuzzShowProcRoundTrip(f *testing.F) {
	f.Add(2132, 4, 1, 12749, 1, 2164, 0)
	f.Add(1, 0, 0, 2, 0, 3, 0)
	f.Add(-5, -1, -2, 0, -3, 1<<40, 1<<62)
	f.Fuzz(func(t *testing.T, master, reloads, failed, w1, r1, w2, r2 int) {
		if master == 0 {
			return // not a master line
		}
		answer := "#<PID>          <type>          <reloads>       <uptime>        <version>      \n" +
			strconv.Itoa(master) + "            master          " + strconv.Itoa(reloads) + " [failed: " + strconv.Itoa(failed) + "]   0d00h05m20s     2.6.12\n" +
			"# workers\n" +
			strconv.Itoa(w1) + "           worker          " + strconv.Itoa(r1) + "               0d00h00m04s     2.6.12\n" +
			strconv.Itoa(w2) + "           worker          " + strconv.Itoa(r2) + "               0d00h00m09s     2.6.12\n" +
			"# programs\n\n"
		got, err := ParseShowProc(answer)
		if err != nil {
			t.Fatalf("%q: %v", answer, err)
		}
		want := Procs{Master: Proc{PID: master, Type: "master", Reloads: reloads, Failed: failed},
			Workers: []Proc{{PID: w1, Type: "worker", Reloads: r1}, {PID: w2, Type: "worker", Reloads: r2}}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got  %+v\n want %+v", answer, got, want)
		}
	})
}

// FuzzParseState checks that the three state names are the only ones
// accepted, and that String, ParseState and the text methods agree.
func FuzzParseState(f *testing.F) {
	for _, s := range []string{"ready", "drain", "maint", "Ready", "ready\n", " maint", "state(4)", "", "\x00", "drain;"} {
		f.Add(s, uint8(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, b uint8) {
		st, err := ParseState(s)
		if err == nil && (!st.Valid() || st.String() != s) {
			t.Fatalf("ParseState(%q) = %v, which prints as %q", s, st, st.String())
		}
		var viaText State
		if terr := viaText.UnmarshalText([]byte(s)); (terr == nil) != (err == nil) || viaText != st {
			t.Fatalf("UnmarshalText(%q) = %v, %v; ParseState = %v, %v", s, viaText, terr, st, err)
		}
		st = State(b)
		text, err := st.MarshalText()
		if (err == nil) != st.Valid() {
			t.Fatalf("MarshalText(%d) error %v, valid %v", b, err, st.Valid())
		}
		if err != nil {
			return
		}
		if back, err := ParseState(string(text)); err != nil || back != st {
			t.Fatalf("ParseState(%q) = %v, %v, want %v", text, back, err, st)
		}
	})
}

// FuzzValidators checks that each validator accepts only what it promises:
// names of the identifier set, addresses that print and parse back alike,
// ports and weights in range, and options of plain printable words.
func FuzzValidators(f *testing.F) {
	f.Add("be_web", "10.0.0.1", 80, 1, "check inter 2s")
	f.Add("srv1", "2001:db8::1", 65535, 256, "")
	f.Add("a;b", "::ffff:10.0.0.1", 0, -1, "check; shutdown sessions")
	f.Add("a b", "fe80::1%eth0", 65536, 257, "check\nserver evil 1.2.3.4:80")
	f.Add("a\nb", "0.0.0.0", -1, 1<<62, "weight 10")
	f.Add("a\x00", "::", 1<<40, -1<<62, "check # comment")
	f.Add("..", "224.0.0.1", 1, 0, "check\x00")
	f.Add(strings.Repeat("a", MaxNameLen+1), "ff02::1", 443, 100, "disabled")
	f.Add("\xff\xfe", "127.0.0.1:80", 8080, 7, "ssl verify none sni str(é)")
	f.Add("#", "1.2.3.4 ", 22, 3, "\tcheck\r")
	f.Fuzz(func(t *testing.T, name, addrText string, port, weight int, options string) {
		if ValidName(name) == nil {
			if len(name) == 0 || len(name) > MaxNameLen {
				t.Fatalf("ValidName accepted %d bytes", len(name))
			}
			if i := strings.IndexFunc(name, func(r rune) bool { return !strings.ContainsRune(nameChars, r) }); i >= 0 {
				t.Fatalf("ValidName accepted %q with %q", name, name[i])
			}
		}
		if addr, err := netip.ParseAddr(addrText); err == nil && ValidAddr(addr) == nil {
			s := addr.String()
			if back, err := netip.ParseAddr(s); err != nil || back != addr {
				t.Fatalf("valid address %v prints as %q, which parses as %v, %v", addr, s, back, err)
			}
			if strings.ContainsAny(s, "% \n;") || addr.Is4In6() || addr.IsUnspecified() || addr.IsMulticast() {
				t.Fatalf("ValidAddr accepted %v", addr)
			}
		}
		if ValidPort(port) == nil && (port < 1 || int(uint16(port)) != port) {
			t.Fatalf("ValidPort accepted %d", port)
		}
		if ValidWeight(weight) == nil && (weight < 0 || weight > MaxWeight) {
			t.Fatalf("ValidWeight accepted %d", weight)
		}
		if ValidOptions(options) == nil {
			for i := 0; i < len(options); i++ {
				if c := options[i]; c < ' ' || c > '~' || strings.IndexByte(";#\\\"'", c) >= 0 {
					t.Fatalf("ValidOptions accepted %q with %q", options, c)
				}
			}
			for _, w := range strings.Fields(options) {
				if _, owned := ownedKeywords[w]; owned {
					t.Fatalf("ValidOptions accepted the owned keyword %q", w)
				}
			}
		}
	})
}

// FuzzCommandRoundTrip parses every built command back into its tokens and
// checks that they are exactly the values it was built from.
func FuzzCommandRoundTrip(f *testing.F) {
	f.Add("be_web", "srv1", "10.0.0.1", 80, 1, "check inter 2s")
	f.Add("be_web", "srv1", "2001:db8::5", 65535, 256, "")
	f.Add("be.web:1", "srv-1_a", "::ffff:192.0.2.1", 1, 0, "  check   ssl  ")
	f.Add("be;web", "srv1", "10.0.0.1;shutdown sessions", 80, 1, "check;show info")
	f.Add("be_web", "srv 1", "10.0.0.1\nshow info", 0, -1, "check\nshow info")
	f.Add("be_web\r", "srv1\x00", "fe80::1%eth0", 70000, 300, "weight 5")
	f.Add("", "", "", 0, 0, "#")
	f.Add(strings.Repeat("b", MaxNameLen), "s", "0.0.0.0", -1, 1<<62, "\xff")
	f.Fuzz(func(t *testing.T, backend, server, addrText string, port, weight int, options string) {
		addr, _ := netip.ParseAddr(addrText)
		ref := backend + "/" + server
		namesOK := ValidName(backend) == nil && ValidName(server) == nil
		expect := func(what string, cmd Command, err error, want ...string) {
			t.Helper()
			if err != nil {
				if !cmd.IsZero() {
					t.Fatalf("%s: error %v with command %q", what, err, cmd)
				}
				return
			}
			s := cmd.String()
			if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 || strings.ContainsAny(s, ";#") {
				t.Fatalf("%s: unsafe byte in %q", what, s)
			}
			if got := strings.Split(s, " "); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: tokens %q, want %q", what, got, want)
			}
		}

		cmd, err := ShowServersState(backend)
		expect("ShowServersState", cmd, err, "show", "servers", "state", backend)
		if (err == nil) != (ValidName(backend) == nil) {
			t.Fatalf("ShowServersState(%q): %v", backend, err)
		}
		cmd, err = ShowStat(backend)
		expect("ShowStat", cmd, err, "show", "stat", backend, "4", "-1")
		if (err == nil) != (ValidName(backend) == nil) {
			t.Fatalf("ShowStat(%q): %v", backend, err)
		}
		cmd, err = EnableHealth(backend, server)
		expect("EnableHealth", cmd, err, "enable", "health", ref)
		if (err == nil) != namesOK {
			t.Fatalf("EnableHealth(%q, %q): %v", backend, server, err)
		}
		cmd, err = EnableAgent(backend, server)
		expect("EnableAgent", cmd, err, "enable", "agent", ref)
		if (err == nil) != namesOK {
			t.Fatalf("EnableAgent(%q, %q): %v", backend, server, err)
		}
		cmd, err = DelServer(backend, server)
		expect("DelServer", cmd, err, "del", "server", ref)

		cmd, err = SetAddr(backend, server, addr, port)
		expect("SetAddr", cmd, err, "set", "server", ref, "addr", addr.String(), "port", strconv.Itoa(port))
		if err == nil {
			if back, perr := netip.ParseAddr(addr.String()); perr != nil || back != addr {
				t.Fatalf("SetAddr address %v does not parse back: %v", addr, perr)
			}
		}
		cmd, err = SetWeight(backend, server, weight)
		expect("SetWeight", cmd, err, "set", "server", ref, "weight", strconv.Itoa(weight))
		st := State(weight & 3)
		cmd, err = SetState(backend, server, st)
		expect("SetState", cmd, err, "set", "server", ref, "state", st.String())
		if err == nil {
			if back, perr := ParseState(st.String()); perr != nil || back != st {
				t.Fatalf("SetState state %v does not parse back", st)
			}
		}

		ep := netip.AddrPortFrom(addr, uint16(port))
		cmd, err = AddServer(backend, server, ep, weight, options)
		want := append([]string{"add", "server", ref, ep.String(), "weight", strconv.Itoa(weight)}, strings.Fields(options)...)
		expect("AddServer", cmd, err, want...)
		if err == nil {
			if back, perr := netip.ParseAddrPort(ep.String()); perr != nil || back != ep {
				t.Fatalf("AddServer endpoint %v does not parse back: %v", ep, perr)
			}
		}
	})
}

// FuzzFramer feeds a prompt-mode stream to the framer in chunks of fuzzed
// sizes, through a buffer of fuzzed initial size, and checks that it
// returns the answers a plain split finds, in order, none holding the
// delimiter, then a protocol error at the end of the stream.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("\n> \n> 1\n# be_id be_name\n\n> New server registered.\n\n> "), []byte{1, 2, 3}, uint8(4), false)
	f.Add([]byte("\n> IP changed from '127.0.0.1' to '10.0.0.1'\n\n> Unknown command\n\n> partial"), []byte{0, 0, 7}, uint8(1), true)
	f.Add([]byte("\n\n\n> > >\n>\n> \r\n> \x00\n> "), []byte{2}, uint8(3), false)
	f.Add([]byte(strings.Repeat("x", 300)+"\n"+strings.Repeat("\n> ", 5)), []byte{255, 1, 128}, uint8(2), true)
	f.Add([]byte("no prompt at all"), []byte{}, uint8(0), false)
	f.Add([]byte(""), []byte{1}, uint8(64), true)
	f.Fuzz(func(t *testing.T, stream, chunks []byte, bufSize uint8, eofWithData bool) {
		want := splitPrompt(stream)
		r := &chunkReader{data: stream, sizes: chunks, eofWithData: eofWithData}
		fr := framer{r: r, buf: make([]byte, 1+int(bufSize)%64)}
		for i, w := range want {
			got, err := fr.next()
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			if strings.Contains(got, "\n> ") {
				t.Fatalf("answer %d %q holds the prompt", i, got)
			}
			if got != w {
				t.Fatalf("answer %d = %q, want %q", i, got, w)
			}
		}
		if got, err := fr.next(); !errors.Is(err, ErrProtocol) {
			t.Fatalf("after the last answer: %q, %v; want ErrProtocol", got, err)
		}
	})
}

// nameChars are the characters HAProxy accepts in an identifier.
const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"

// singleToken reports whether s is a non-empty word without spaces or line
// breaks.
func singleToken(s string) bool { return s != "" && !strings.ContainsAny(s, " \n") }

// splitPrompt is the reference framing: each answer ends at the first
// "\n> ", without the newline that ends its body.
func splitPrompt(stream []byte) []string {
	var out []string
	for {
		i := bytes.Index(stream, promptDelim)
		if i < 0 {
			return out
		}
		out = append(out, string(bytes.TrimSuffix(stream[:i], []byte("\n"))))
		stream = stream[i+len(promptDelim):]
	}
}

// chunkReader returns data in reads of the given sizes (0 is an empty read;
// past the list, the rest at once), optionally with io.EOF on the last one.
type chunkReader struct {
	data        []byte
	sizes       []byte
	eofWithData bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n, r.sizes = int(r.sizes[0]), r.sizes[1:]
	}
	n = copy(p, r.data[:min(n, len(r.data))])
	r.data = r.data[n:]
	if r.eofWithData && len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}
