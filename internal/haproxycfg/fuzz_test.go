package haproxycfg

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/haproxytech/client-native/v5/config-parser/common"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// fuzzConfig is a small user file with the shapes the slot edits meet:
// comments, tabs, a listen section, a backend with and without slots.
const fuzzConfig = `global
    stats socket /run/haproxy/admin.sock level admin

defaults
	mode http

frontend fe_main
    bind :80
    default_backend be_web

backend be_web
    balance roundrobin
    server srv2 10.0.0.2:80 weight 3 check
    # keep this comment

listen li_api
	bind :8080
	server legacy 10.1.1.1:8080 check
`

// FuzzParse checks that client-native's reading of any file never panics
// nor gets stuck where clientNativeMayLoop does not expect it, and that
// every server it reports for a backend is a single word of the config's
// syntax (which keeps a blank escaped with '\\' or inside quotes).
func FuzzParse(f *testing.F) {
	f.Add([]byte(fuzzConfig))
	f.Add([]byte("backend be_web\r\n    server srv1 127.0.0.1:1 disabled\r\n"))
	f.Add([]byte("backend be_web\n    server\n    server srv1\n    server srv1 1.2.3.4:80 weight 1 weight\nbackend be_web\n"))
	f.Add([]byte("defaults\ndefaults d2 from d1\nbackend b from d2\n  server s1 [2001:db8::1]:80 # c\n"))
	f.Add([]byte("backend b;x\n  server s\x00 1.2.3.4:80\n  server s\xff 1.2.3.4:99999\n"))
	f.Add([]byte("listen\nbackend\nfrontend\n\tbind\n"))
	f.Add([]byte("backend 0\nserver \\  0\nserver \"a b\" 0 check\n"))
	f.Add([]byte("#" + strings.Repeat("x", 4096) + "\nbackend b\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if clientNativeMayLoop(data) {
			return // Parse would give up, leaving a goroutine spinning
		}
		p, err := Parse(data)
		if errors.Is(err, ErrParseStuck) {
			t.Fatalf("stuck on a file that clientNativeMayLoop passed: %v", err)
		}
		if err != nil {
			return
		}
		for _, name := range fuzzNames(data) {
			servers, _ := p.Servers(name)
			for _, s := range servers {
				if w, c := common.StringSplitWithCommentIgnoreEmpty(s.Name); len(w) != 1 || w[0] != s.Name || c != "" {
					t.Fatalf("backend %s: server name %q", name, s.Name)
				}
			}
		}
	})
}

// FuzzEnsureSlots adds slots to arbitrary files and checks that only slot
// lines (and a created backend's header) are added, every slot is then in
// the file for hapctl and client-native alike, and a second pass is a
// no-op.
func FuzzEnsureSlots(f *testing.F) {
	f.Add([]byte(fuzzConfig), "be_web", uint8(3), "check inter 2s")
	f.Add([]byte(fuzzConfig), "li_api", uint8(2), "")
	f.Add([]byte(fuzzConfig), "be_new", uint8(4), "check")
	f.Add([]byte("backend be_web\r\n    bind :80\r\n"), "be_web", uint8(2), "")
	f.Add([]byte("backend be_web\n\tserver srv1 127.0.0.1:1 disabled weight 9 ssl # mine\n"), "be_web", uint8(2), "check")
	f.Add([]byte("backend be_web"), "be_web", uint8(1), "")
	f.Add([]byte("backend be_web\nbackend be_web\n  server srv1 x\n"), "be_web", uint8(2), "")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be_web\nbackend evil", uint8(1), "check\n  server evil 1.2.3.4:80")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be;web", uint8(1), "check # x")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be_web", uint8(1), "weight 3")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be_web", uint8(1), "\xff\x00")
	f.Add([]byte("backend be_web\n\n# trailing\n"), "be_web", uint8(255), "")
	f.Add([]byte{}, "b", uint8(0), "")
	f.Fuzz(func(t *testing.T, data []byte, backend string, slots uint8, options string) {
		specs := []SlotSpec{{Backend: backend, Slots: int(slots % 9), Options: options}, {Backend: "be_fuzz_other", Slots: 1}}
		out, changes, err := EnsureSlots(data, specs)
		if err != nil {
			twice := func(name string) bool { return len(splitText(data).proxies(name)) > 1 }
			if runtime.ValidName(backend) == nil && config.CheckServerOptions(options) == nil && !twice(backend) && !twice(specs[1].Backend) {
				t.Fatalf("valid spec %+v refused: %v", specs[0], err)
			}
			return
		}
		if runtime.ValidName(backend) != nil || config.CheckServerOptions(options) != nil {
			t.Fatalf("accepted spec %+v", specs[0])
		}
		if (len(changes) == 0) != bytes.Equal(out, data) {
			t.Fatalf("changes %v do not match the edit", changes)
		}
		added := 0
		for _, c := range changes {
			added += len(c.Added)
			if c.Created {
				added += 2 // the header, and a blank line before it at most
			}
		}
		if n, m := len(fuzzLines(data)), len(fuzzLines(out)); m < n || m > n+added {
			t.Fatalf("%d lines became %d with %d added:\n%s", n, m, added, out)
		}
		assertOnlyAdded(t, data, out)
		for _, s := range specs {
			have := SlotsInFile(out, s.Backend)
			for i := 1; i <= s.Slots; i++ {
				if !slices.Contains(have, i) {
					t.Fatalf("backend %s: slot %d missing, have %v:\n%s", s.Backend, i, have, out)
				}
			}
		}
		again, changes, err := EnsureSlots(out, specs)
		if err != nil || len(changes) != 0 || !bytes.Equal(again, out) {
			t.Fatalf("second pass: %v %v\n%s", changes, err, again)
		}
		if clientNativeMayLoop(data) {
			return // the user's own lines would make Parse give up
		}
		if _, err := Parse(data); err == nil {
			if err := Verify(out, specs); err != nil {
				t.Fatalf("client-native read the input but not the slots: %v\n%s", err, out)
			}
		}
	})
}

// FuzzSetSlots sets a backend's slots from fuzzed states and checks that
// the file then has exactly those slots, each line reading back as its
// state, with every user line kept, and that a second pass is a no-op.
func FuzzSetSlots(f *testing.F) {
	f.Add([]byte(fuzzConfig), "be_web", []byte{1, 2}, "10.0.0.5", uint16(8080), 3, false, "check")
	f.Add([]byte(fuzzConfig), "be_web", []byte{}, "10.0.0.5", uint16(8080), 3, false, "")
	f.Add([]byte(fuzzConfig), "be_new", []byte{1, 4, 4}, "2001:db8::7", uint16(443), 256, true, "")
	f.Add([]byte("backend be_web\r\n\tserver srv1 127.0.0.1:1 disabled\r\n\tserver srv2 10.0.0.9:80\r\n\thttp-request set-header X 1\r\n"), "be_web", []byte{2, 3}, "::ffff:10.0.0.1", uint16(80), 0, true, "")
	f.Add([]byte("backend be_web\n  server srv1 x\n  server srv1 y\n"), "be_web", []byte{1}, "10.0.0.1", uint16(80), 1, false, "")
	f.Add([]byte("backend be_web"), "be_web", []byte{15}, "10.0.0.1", uint16(1), 1, false, "ssl verify none")
	f.Add([]byte("backend be_web\n"), "be_web", []byte{1}, "0.0.0.0", uint16(0), 300, false, "check\nserver evil 1.2.3.4:80")
	f.Add([]byte("backend be_web\n"), "be web", []byte{1}, "fe80::1%eth0", uint16(80), -1, false, "check;x")
	f.Fuzz(func(t *testing.T, data []byte, backend string, indices []byte, addrText string, port uint16, weight int, maint bool, options string) {
		addr, _ := netip.ParseAddr(addrText)
		var states []SlotState
		want := map[int]SlotState{}
		dup := false
		for i, b := range indices[:min(len(indices), 8)] {
			// Distinct addresses, so that a line shows which state it has.
			s := SlotState{Index: int(b%16) + 1, Endpoint: netip.AddrPortFrom(addr, port+uint16(i)), Weight: weight, Maint: maint != (i%2 == 1)}
			_, seen := want[s.Index]
			dup = dup || seen
			want[s.Index] = s
			states = append(states, s)
		}
		out, err := SetSlots(data, backend, states, options)
		if err != nil {
			return
		}
		if runtime.ValidName(backend) != nil || config.CheckServerOptions(options) != nil {
			t.Fatalf("accepted backend %q, options %q", backend, options)
		}
		if dup {
			t.Fatalf("accepted two states of one slot: %+v", states)
		}
		assertSlots(t, out, backend, want, options)
		if n := len(SlotsInFile(out, backend)); n != len(want) {
			t.Fatalf("%d slot lines, want %d:\n%s", n, len(want), out)
		}
		assertOnlyAdded(t, data, out)
		again, err := SetSlots(out, backend, states, options)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second pass (%v):\n%s\nthen:\n%s", err, out, again)
		}
		if clientNativeMayLoop(data) {
			return // the user's own lines would make Parse give up
		}
		if _, err := Parse(data); err == nil {
			if err := Verify(out, []SlotSpec{{Backend: backend}}); err != nil {
				t.Fatalf("client-native read the input but not the slots: %v\n%s", err, out)
			}
		}
	})
}

// FuzzRefreshSlots rewrites one slot line of arbitrary files and checks
// that no line is added or removed, and that the slot then reads back as
// its state.
func FuzzRefreshSlots(f *testing.F) {
	f.Add([]byte(fuzzConfig), "be_web", uint8(2), "10.0.0.5", uint16(8080), 3, false, "check")
	f.Add([]byte(fuzzConfig), "be_web", uint8(1), "10.0.0.5", uint16(8080), 3, true, "")
	f.Add([]byte(fuzzConfig), "li_api", uint8(1), "2001:db8::1", uint16(443), 0, true, "ssl")
	f.Add([]byte("backend be_web\r\n\tserver srv1 127.0.0.1:1 disabled # free\r\n"), "be_web", uint8(1), "::ffff:10.0.0.1", uint16(80), 256, false, "")
	f.Add([]byte("backend be_web\n  server srv1 x\n  server srv1 y\n"), "be_web", uint8(1), "10.0.0.1", uint16(80), 1, false, "")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be_web", uint8(1), "10.0.0.1", uint16(80), 1, false, "check\n  server evil 1.2.3.4:80")
	f.Add([]byte("backend be_web\n  server srv1 x\n"), "be_web", uint8(1), "224.0.0.1", uint16(0), 257, false, "")
	f.Fuzz(func(t *testing.T, data []byte, backend string, index uint8, addrText string, port uint16, weight int, maint bool, options string) {
		addr, _ := netip.ParseAddr(addrText)
		st := SlotState{Index: int(index%16) + 1, Endpoint: netip.AddrPortFrom(addr, port), Weight: weight, Maint: maint}
		out, err := RefreshSlots(data, backend, map[int]SlotState{st.Index: st}, options)
		if err != nil {
			return
		}
		if config.CheckServerOptions(options) != nil {
			t.Fatalf("accepted options %q", options)
		}
		in, got := fuzzLines(data), fuzzLines(out)
		if len(in) != len(got) {
			t.Fatalf("%d lines became %d:\n%s", len(in), len(got), out)
		}
		if !slices.Contains(SlotsInFile(data, backend), st.Index) {
			if !slices.Equal(in, got) {
				t.Fatalf("no slot %d, yet the file changed:\n%s", st.Index, out)
			}
			return
		}
		want := map[int]SlotState{st.Index: st}
		for _, n := range SlotsInFile(data, backend) {
			if n != st.Index {
				want[n] = SlotState{Index: -1} // present, left alone
			}
		}
		assertSlots(t, out, backend, want, options)
	})
}

// FuzzRenderSlotLine checks that a rendered slot line is one safe line that
// the section reader finds and reads back as the state it came from, and
// that a free slot's line does too.
func FuzzRenderSlotLine(f *testing.F) {
	f.Add("    ", 1, "10.0.0.1", uint16(80), 1, false, "check")
	f.Add("\t", 999999, "2001:db8::7", uint16(65535), 256, true, "")
	f.Add("", 7, "::ffff:10.0.0.1", uint16(443), 0, true, "ssl verify none")
	f.Add("  ", 0, "10.0.0.1", uint16(80), 1, false, "")
	f.Add("  ", -3, "10.0.0.1", uint16(80), 1, false, "")
	f.Add("  ", 1000000, "10.0.0.1", uint16(80), 1, false, "")
	f.Add("  ", 1, "fe80::1%eth0", uint16(80), 1, false, "")
	f.Add("  ", 1, "10.0.0.1", uint16(0), -1, false, "check\nserver evil 1.2.3.4:80")
	f.Add("  ", 1, "0.0.0.0", uint16(80), 257, false, "check # x")
	f.Fuzz(func(t *testing.T, indent string, index int, addrText string, port uint16, weight int, maint bool, options string) {
		if config.CheckServerOptions(options) != nil {
			return // callers pass only validated options
		}
		indent = strings.Map(func(r rune) rune { // callers pass a line's own indentation
			if r == '\t' {
				return r
			}
			return ' '
		}, indent)
		addr, _ := netip.ParseAddr(addrText)
		st := SlotState{Index: index, Endpoint: netip.AddrPortFrom(addr, port), Weight: weight, Maint: maint}
		text, err := RenderSlotLine(indent, st, options)
		if err != nil {
			return
		}
		if runtime.ValidAddr(addr) != nil || runtime.ValidPort(int(port)) != nil || runtime.ValidWeight(weight) != nil ||
			index < 1 || index > slot.MaxIndex {
			t.Fatalf("rendered %q from %+v", text, st)
		}
		if strings.IndexFunc(text, func(r rune) bool { return r != '\t' && (r < ' ' || r > '~') }) >= 0 || strings.ContainsAny(text, ";#") {
			t.Fatalf("unsafe line %q", text)
		}
		free := index%slot.MaxIndex + 1
		data := []byte("backend be_web\n" + text + "\n" + SlotLine(indent, free, options) + "\n")
		assertSlots(t, data, "be_web", map[int]SlotState{index: st, free: {Index: free, Endpoint: PlaceholderEndpoint, Maint: true, Weight: -1}}, options)
	})
}

// FuzzSlotsInFile checks that the slot numbers read from any file are
// sorted, in range, and exactly the backend's `server srvN` lines.
func FuzzSlotsInFile(f *testing.F) {
	f.Add([]byte(fuzzConfig), "be_web")
	f.Add([]byte("backend a\n  server srv2 x\n  server srv1 y # srv9\n  server srvx z\nbackend b\n  server srv7 q\n"), "a")
	f.Add([]byte("listen a\r\n\tserver srv01 x\r\n\tserver srv-1 x\r\n\tserver srv0 x\r\n\tserver srv999999 x\r\n\tserver srv1000000 x\r\n"), "a")
	f.Add([]byte("backend a\n#server srv1 x\n server\tsrv3\n  server srv3 x\n"), "a")
	f.Add([]byte("backend a b\n  server srv1 x\nbackend a\n  server srv2 x\n"), "a")
	f.Add([]byte("backend a\x00\n  server srv1 x\n"), "a\x00")
	f.Fuzz(func(t *testing.T, data []byte, backend string) {
		got := SlotsInFile(data, backend)
		if !slices.IsSorted(got) {
			t.Fatalf("unsorted %v", got)
		}
		for _, n := range got {
			if n < 1 || n > slot.MaxIndex {
				t.Fatalf("slot %d out of range", n)
			}
		}
		// Reference: the lines of the first backend or listen section of
		// that name that start with "server srvN".
		var want []int
		in := false
		for _, l := range fuzzLines(data) {
			w := words(l)
			if len(w) > 0 && sectionKeywords[w[0]] {
				if in {
					break
				}
				in = (w[0] == "backend" || w[0] == "listen") && len(w) > 1 && w[1] == backend
				continue
			}
			if in && len(w) > 1 && w[0] == "server" {
				if n, ok := slot.Index(w[1]); ok {
					want = append(want, n)
				}
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("SlotsInFile = %v, want %v", got, want)
		}
	})
}

// clientNativeMayLoop reports whether data has a line that may send
// client-native's parser into its endless loop (see Parse), from which Parse
// gives up after parseTimeout and leaves a goroutine spinning: fuzzing such
// files would pile up spinning goroutines. It may say yes too often, never
// too seldom: a server line with a '(', or with a keyword that takes a value
// (config.CheckServerKeywords) as its last word before a comment.
func clientNativeMayLoop(data []byte) bool {
	isSep := func(r rune) bool { return unicode.IsSpace(r) || r == '#' }
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.FieldsFunc(l, isSep)
		if len(f) == 0 || !strings.Contains(f[0], "server") {
			continue
		}
		if strings.ContainsAny(l, "(") || strings.Contains(l, "set-proxy-v2-tlv-fmt") {
			return true
		}
		rest := l
		for _, w := range f {
			at := strings.Index(rest, w)
			rest = rest[at+len(w):]
			after := strings.TrimLeftFunc(rest, unicode.IsSpace)
			if config.CheckServerKeywords([]string{w}) != nil && (after == "" || after[0] == '#') {
				return true
			}
		}
	}
	return false
}

// assertSlots checks that the backend's slot lines in data are exactly the
// keys of want, and that each reads back as its state: address,
// weight, maint and options. A state with Index -1 is only checked to be
// there; one with Weight -1 is a free slot's line, which has no weight.
func assertSlots(t *testing.T, data []byte, backend string, want map[int]SlotState, options string) {
	t.Helper()
	if got, keys := slices.Compact(SlotsInFile(data, backend)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, keys) {
		t.Fatalf("slots %v, want %v:\n%s", got, keys, data)
	}
	tx := splitText(data)
	sec, _ := tx.proxy(backend)
	for _, l := range sec.lines[1:] {
		n, ok := slotLine(l)
		if !ok || want[n].Index == -1 {
			continue
		}
		w := want[n]
		f := l.fields
		got := SlotState{Index: n, Weight: -1}
		ep, err := netip.ParseAddrPort(f[2])
		if err != nil {
			t.Fatalf("line %q: %v", l.text, err)
		}
		got.Endpoint = ep
		rest := f[3:]
		if len(rest) > 0 && rest[0] == "disabled" {
			got.Maint, rest = true, rest[1:]
		}
		if len(rest) > 1 && rest[0] == "weight" {
			got.Weight, _ = strconv.Atoi(rest[1])
			rest = rest[2:]
		}
		if got != w || strings.Join(rest, " ") != strings.Join(strings.Fields(options), " ") {
			t.Fatalf("line %q reads as %+v with options %q; want %+v with %q", l.text, got, rest, w, options)
		}
	}
}

// fuzzLines splits data as splitText does.
func fuzzLines(data []byte) []string {
	var out []string
	for _, l := range splitText(data).allLines() {
		out = append(out, l.text)
	}
	return out
}

// fuzzNames returns the second word of every line: the candidate section
// names of a file.
func fuzzNames(data []byte) []string {
	var out []string
	for _, l := range fuzzLines(data) {
		if w := strings.Fields(l); len(w) > 1 {
			out = append(out, w[1])
		}
	}
	return out
}
