package haproxycfg

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/slot"
)

var update = flag.Bool("update", false, "rewrite the want section of testdata/*.txtar")

// archive is a tiny txtar: a comment, then "-- name --" sections.
type archive struct {
	comment string
	order   []string
	files   map[string]string
}

func readArchive(t *testing.T, path string) archive {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := archive{files: map[string]string{}}
	cur := ""
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(l, "-- ") && strings.HasSuffix(strings.TrimRight(l, "\r\n"), " --") {
			cur = strings.TrimSuffix(strings.TrimPrefix(strings.TrimRight(l, "\r\n"), "-- "), " --")
			a.order = append(a.order, cur)
			continue
		}
		if cur == "" {
			a.comment += l
		} else {
			a.files[cur] += l
		}
	}
	return a
}

func (a archive) bytes() []byte {
	var b bytes.Buffer
	b.WriteString(a.comment)
	for _, name := range a.order {
		b.WriteString("-- " + name + " --\n")
		b.WriteString(a.files[name])
	}
	return b.Bytes()
}

// matchGolden fails t unless got is the archive's want section; with
// -update it rewrites that section instead and returns false.
func matchGolden(t *testing.T, path string, a archive, got []byte) bool {
	t.Helper()
	if *update {
		a.files["want"] = string(got)
		if err := os.WriteFile(path, a.bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return false
	}
	if string(got) != a.files["want"] {
		t.Fatalf("got:\n%s\nwant:\n%s", got, a.files["want"])
	}
	return true
}

func parseSpecs(t *testing.T, s string) []SlotSpec {
	t.Helper()
	var out []SlotSpec
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, SlotSpec{Backend: f[0], Slots: n, Options: strings.Join(f[2:], " ")})
	}
	return out
}

func TestEnsureSlotsGolden(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/*.txtar")
	if len(files) < 5 {
		t.Fatalf("only %d golden files", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a := readArchive(t, path)
			input := []byte(a.files["input"])
			if strings.Contains(path, "create-backend") {
				input = bytes.TrimSuffix(input, []byte("\n")) // no final newline
			}
			specs := parseSpecs(t, a.files["specs"])
			got, changes, err := EnsureSlots(input, specs)
			if err != nil {
				t.Fatal(err)
			}
			if !matchGolden(t, path, a, got) {
				return // rewritten
			}
			if (len(changes) == 0) != bytes.Equal(got, input) {
				t.Fatalf("changes %v do not match the edit", changes)
			}
			if err := Verify(got, specs); err != nil {
				t.Fatalf("client-native does not see the slots: %v", err)
			}
			assertOnlyAdded(t, input, got)
			// Idempotent: a second pass changes nothing.
			again, changes2, err := EnsureSlots(got, specs)
			if err != nil || !bytes.Equal(again, got) || len(changes2) != 0 {
				t.Fatalf("second pass changed the file: %v %v", changes2, err)
			}
		})
	}
}

// assertOnlyAdded checks that hapctl touched nothing but its own lines:
// the input's lines other than slot lines appear in out unchanged, line
// endings included, and in order, and out's other additions are a created
// backend's header and blank separators. Only an input's last line without
// an ending may gain one, when lines are added after it.
func assertOnlyAdded(t *testing.T, in, out []byte) {
	t.Helper()
	userLines := func(data []byte) []string {
		var keep []string
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if _, ok := slotLine(newLine(l)); !ok && l != "" {
				keep = append(keep, l)
			}
		}
		return keep
	}
	inLines, outLines := userLines(in), userLines(out)
	i := 0
	for _, l := range outLines {
		if i < len(inLines) && (l == inLines[i] || i == len(inLines)-1 && !strings.HasSuffix(inLines[i], "\n") &&
			(l == inLines[i]+"\n" || l == inLines[i]+"\r\n")) {
			i++
			continue
		}
		if l = strings.TrimRight(l, "\r\n"); !strings.HasPrefix(l, "backend ") && l != "" {
			t.Fatalf("line %q is neither the user's nor hapctl's", l)
		}
	}
	if i != len(inLines) {
		t.Fatalf("user line %q lost or changed:\n%q", inLines[i], out)
	}
}

func TestEnsureSlotsRefusesUnsafeValues(t *testing.T) {
	t.Parallel()
	in := []byte("backend be_web\n")
	for _, spec := range []SlotSpec{
		{Backend: "be web", Slots: 1},
		{Backend: "be_web\nglobal", Slots: 1},
		{Backend: "be_web", Slots: 1, Options: "check\n    server evil 1.2.3.4:80"},
		{Backend: "be_web", Slots: 1, Options: "check # comment"},
		{Backend: "be_web", Slots: 1, Options: "check; x"},
	} {
		if out, _, err := EnsureSlots(in, []SlotSpec{spec}); err == nil {
			t.Errorf("spec %+v accepted:\n%s", spec, out)
		}
	}
}

func TestSlotsInFile(t *testing.T) {
	t.Parallel()
	data := []byte("backend a\n  server srv2 x\n  server srv1 y # srv9\n  server srvx z\nbackend b\n  server srv7 q\n")
	if got := SlotsInFile(data, "a"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("a: %v", got)
	}
	if got := SlotsInFile(data, "missing"); got != nil {
		t.Fatalf("missing: %v", got)
	}
}

func parseStates(t *testing.T, s string) []SlotState {
	t.Helper()
	var out []SlotState
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		n, err1 := strconv.Atoi(f[0])
		w, err2 := strconv.Atoi(f[2])
		ep, err3 := netip.ParseAddrPort(f[1])
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("state line %q: %v", l, err)
		}
		out = append(out, SlotState{Index: n, Endpoint: ep, Weight: w, Maint: f[3] == "maint"})
	}
	return out
}

// TestSetSlotsGolden renders slot lines from runtime states into the
// files in testdata/render (go test -run TestSetSlotsGolden -update
// rewrites their want section).
func TestSetSlotsGolden(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/render/*.golden")
	if len(files) < 4 {
		t.Fatalf("only %d golden files", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a := readArchive(t, path)
			input := []byte(a.files["input"])
			backend := strings.TrimSpace(a.files["backend"])
			options := strings.TrimSpace(a.files["options"])
			states := parseStates(t, a.files["states"])
			got, err := SetSlots(input, backend, states, options)
			if err != nil {
				t.Fatal(err)
			}
			if !matchGolden(t, path, a, got) {
				return // rewritten
			}
			assertOnlyAdded(t, input, got)
			if err := Verify(got, []SlotSpec{{Backend: backend, Slots: len(states)}}); err != nil {
				t.Fatalf("client-native does not see the slots: %v", err)
			}
			if n := len(SlotsInFile(got, backend)); n != len(states) {
				t.Fatalf("%d slot lines, want %d", n, len(states))
			}
			again, err := SetSlots(got, backend, states, options)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("second pass changed the file (%v):\n%s", err, again)
			}
		})
	}
}

func TestSetSlotsRefusesUnsafeValues(t *testing.T) {
	t.Parallel()
	in := []byte("backend be_web\n")
	ok := SlotState{Index: 1, Endpoint: PlaceholderEndpoint, Weight: 1}
	for _, c := range []struct {
		backend, options string
		state            SlotState
	}{
		{"be web", "", ok},
		{"be_web", "check\n    server evil 1.2.3.4:80", ok},
		{"be_web", "", SlotState{Index: 1, Endpoint: netip.MustParseAddrPort("0.0.0.0:80"), Weight: 1}},
		{"be_web", "", SlotState{Index: 1, Endpoint: netip.MustParseAddrPort("10.0.0.1:0"), Weight: 1}},
		{"be_web", "", SlotState{Index: 1, Endpoint: PlaceholderEndpoint, Weight: 300}},
	} {
		if out, err := SetSlots(in, c.backend, []SlotState{c.state}, c.options); err == nil {
			t.Errorf("%+v accepted:\n%s", c, out)
		}
	}
}

// TestRenderSlotLineRefusesIndexOutOfRange: srv0 or srv1000000 is no slot
// line, so SetSlots would add it again at every pass.
func TestRenderSlotLineRefusesIndexOutOfRange(t *testing.T) {
	t.Parallel()
	for _, index := range []int{0, -3, slot.MaxIndex + 1} {
		st := SlotState{Index: index, Endpoint: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1}
		if line, err := RenderSlotLine("    ", st, ""); err == nil {
			t.Errorf("index %d rendered %q", index, line)
		}
		if out, err := SetSlots([]byte("backend be_web\n"), "be_web", []SlotState{st}, ""); err == nil {
			t.Errorf("index %d: SetSlots wrote:\n%s", index, out)
		}
	}
	if out, _, err := EnsureSlots([]byte("backend be_web\n"), []SlotSpec{{Backend: "be_web", Slots: slot.MaxIndex + 1}}); err == nil {
		t.Errorf("%d slots: EnsureSlots wrote %d bytes", slot.MaxIndex+1, len(out))
	}
}

// TestSetSlotsRefusesDuplicateIndex: two states of one slot would render
// the existing line from one and a new line from the other.
func TestSetSlotsRefusesDuplicateIndex(t *testing.T) {
	t.Parallel()
	states := []SlotState{
		{Index: 2, Endpoint: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1},
		{Index: 2, Endpoint: netip.MustParseAddrPort("10.0.0.2:80"), Weight: 1},
	}
	for _, in := range []string{"backend be_web\n", "backend be_web\n    server srv2 127.0.0.1:1 disabled\n"} {
		out, err := SetSlots([]byte(in), "be_web", states, "")
		if err == nil || !strings.Contains(err.Error(), "slot srv2 given twice") {
			t.Errorf("%q: err = %v, wrote:\n%s", in, err, out)
		}
	}
}

// TestLineEndingsKept: in a file mixing "\n" and "\r\n", every line keeps
// its own ending, new lines take the one most lines have, and a last line
// without an ending gets one only when lines are added after it.
func TestLineEndingsKept(t *testing.T) {
	t.Parallel()
	const mixed = "global\n    maxconn 10\r\n\nbackend be_web\n    balance roundrobin\r\n" +
		"    server srv1 127.0.0.1:1 disabled\r\n    # end\n"
	const crlfNoEnd = "backend be_web\r\n    option httpchk\r\n    timeout server 5s\n    balance roundrobin"
	states := []SlotState{
		{Index: 1, Endpoint: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1},
		{Index: 2, Endpoint: netip.MustParseAddrPort("10.0.0.2:80"), Weight: 2},
	}
	tests := []struct {
		name string
		edit func([]byte) ([]byte, error)
		in   string
		want string
	}{
		{
			"ensure, mostly LF", func(b []byte) ([]byte, error) {
				out, _, err := EnsureSlots(b, []SlotSpec{{Backend: "be_web", Slots: 2}})
				return out, err
			}, mixed,
			"global\n    maxconn 10\r\n\nbackend be_web\n    balance roundrobin\r\n" +
				"    server srv1 127.0.0.1:1 disabled\r\n    server srv2 127.0.0.1:1 disabled\n    # end\n",
		},
		{
			"set, mostly LF", func(b []byte) ([]byte, error) { return SetSlots(b, "be_web", states, "") }, mixed,
			"global\n    maxconn 10\r\n\nbackend be_web\n    balance roundrobin\r\n" +
				"    server srv1 10.0.0.1:80 weight 1\r\n    server srv2 10.0.0.2:80 weight 2\n    # end\n",
		},
		{
			"refresh, mostly LF", func(b []byte) ([]byte, error) {
				return RefreshSlots(b, "be_web", map[int]SlotState{1: states[0]}, "")
			}, mixed,
			"global\n    maxconn 10\r\n\nbackend be_web\n    balance roundrobin\r\n" +
				"    server srv1 10.0.0.1:80 weight 1\r\n    # end\n",
		},
		{
			"ensure, mostly CRLF, no final ending", func(b []byte) ([]byte, error) {
				out, _, err := EnsureSlots(b, []SlotSpec{{Backend: "be_web", Slots: 1}, {Backend: "be_new", Slots: 1}})
				return out, err
			}, crlfNoEnd,
			crlfNoEnd + "\r\n    server srv1 127.0.0.1:1 disabled\r\n\r\nbackend be_new\r\n    server srv1 127.0.0.1:1 disabled\r\n",
		},
		{
			"set nothing, no final ending", func(b []byte) ([]byte, error) { return SetSlots(b, "be_web", nil, "") },
			crlfNoEnd, crlfNoEnd,
		},
	}
	for _, tt := range tests {
		got, err := tt.edit([]byte(tt.in))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if string(got) != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

// TestEditsRefuseBackendDeclaredTwice: HAProxy refuses two proxies of one
// name, and client-native reads the last where hapctl would edit the first.
func TestEditsRefuseBackendDeclaredTwice(t *testing.T) {
	t.Parallel()
	in := []byte("backend be_web\n    server srv1 127.0.0.1:1 disabled\nlisten be_web\n    bind :80\n")
	st := SlotState{Index: 1, Endpoint: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1}
	_, _, err1 := EnsureSlots(in, []SlotSpec{{Backend: "be_web", Slots: 2}})
	_, err2 := SetSlots(in, "be_web", []SlotState{st}, "")
	_, err3 := RefreshSlots(in, "be_web", map[int]SlotState{1: st}, "")
	for i, err := range []error{err1, err2, err3} {
		if err == nil || !strings.Contains(err.Error(), "backend be_web: declared twice, at lines 1 and 3") {
			t.Errorf("edit %d: err = %v", i+1, err)
		}
	}
}

// manyBackends is a config of n backends with slots slot lines each, as
// hapctl's bootstrap writes them.
func manyBackends(t testing.TB, n, slots int) []byte {
	t.Helper()
	specs := make([]SlotSpec, n)
	for i := range specs {
		specs[i] = SlotSpec{Backend: fmt.Sprintf("be_%03d", i), Slots: slots, Options: "check"}
	}
	data, _, err := EnsureSlots([]byte("global\n    maxconn 100\n\ndefaults\n    mode http\n"), specs)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// passStates gives backend i of a pass its slot states: every backend
// keeps slots-1 of its slots (the last one goes), moved to new addresses,
// and backend 0 gets two more.
func passStates(i, slots int) []SlotState {
	n := slots - 1
	if i == 0 {
		n = slots + 2
	}
	out := make([]SlotState, n)
	for k := range out {
		out[k] = SlotState{Index: k + 1, Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(k)}), 8080), Weight: 1 + k%3, Maint: k%5 == 0}
	}
	return out
}

// TestFileSameAsOneCallEach checks that a File edited for many backends in
// one pass renders exactly what one SetSlots, RefreshSlots and SlotsInFile
// call per backend on the whole text gives.
func TestFileSameAsOneCallEach(t *testing.T) {
	const n, slots = 40, 6
	data := manyBackends(t, n, slots)
	want := data
	f := NewFile(data)
	for i := range n {
		be := fmt.Sprintf("be_%03d", i)
		if got, w := f.SlotsIn(be), SlotsInFile(want, be); !slices.Equal(got, w) {
			t.Fatalf("%s: File says %v, SlotsInFile %v", be, got, w)
		}
		var err error
		if want, err = SetSlots(want, be, passStates(i, slots), "check"); err != nil {
			t.Fatal(err)
		}
		if err := f.SetSlots(be, passStates(i, slots), "check"); err != nil {
			t.Fatal(err)
		}
		refresh := map[int]SlotState{2: {Index: 2, Endpoint: netip.MustParseAddrPort("192.0.2.1:81"), Weight: 9}}
		if want, err = RefreshSlots(want, be, refresh, "check"); err != nil {
			t.Fatal(err)
		}
		if err := f.RefreshSlots(be, refresh, "check"); err != nil {
			t.Fatal(err)
		}
	}
	// A backend the file does not have yet is appended, in both.
	var err error
	if want, err = SetSlots(want, "be_new", passStates(7, 2), ""); err != nil {
		t.Fatal(err)
	}
	if err := f.SetSlots("be_new", passStates(7, 2), ""); err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("one pass on a File differs from one call per backend:\n%s\n---- want ----\n%s", got, want)
	}
	if got := f.SlotsIn("be_000"); len(got) != slots+2 {
		t.Fatalf("be_000 has slots %v after the pass", got)
	}
	if err := Verify(want, nil); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRenderPass is the reloader's render pass at 500 backends of 64
// slots: every backend's slot lines set once, on one File, against the
// pass as it was before File: one SetSlots call (one split of the whole
// file) per backend.
func BenchmarkRenderPass(b *testing.B) {
	const n, slots = 500, 64
	data := manyBackends(b, n, slots)
	states := make([][]SlotState, n)
	for i := range states {
		states[i] = passStates(i, slots)
	}
	b.Run("one-file", func(b *testing.B) {
		for b.Loop() {
			f := NewFile(data)
			for i := range n {
				if err := f.SetSlots(fmt.Sprintf("be_%03d", i), states[i], "check"); err != nil {
					b.Fatal(err)
				}
			}
			_ = f.Bytes()
		}
	})
	b.Run("split-per-backend", func(b *testing.B) {
		for b.Loop() {
			out := data
			var err error
			for i := range n {
				if out, err = SetSlots(out, fmt.Sprintf("be_%03d", i), states[i], "check"); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkVerify is client-native's reading of the whole file, which a
// pass that only writes new values into the same slot lines skips.
func BenchmarkVerify(b *testing.B) {
	const n, slots = 500, 64
	data := manyBackends(b, n, slots)
	specs := make([]SlotSpec, n)
	for i := range specs {
		specs[i] = SlotSpec{Backend: fmt.Sprintf("be_%03d", i), Slots: slots}
	}
	for b.Loop() {
		if err := Verify(data, specs); err != nil {
			b.Fatal(err)
		}
	}
}
