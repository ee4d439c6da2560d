package haproxycfg

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
			if *update {
				a.files["want"] = string(got)
				if err := os.WriteFile(path, a.bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if string(got) != a.files["want"] {
				t.Fatalf("got:\n%s\nwant:\n%s", got, a.files["want"])
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
// the input's lines other than slot lines appear in out unchanged and in
// order, and out's other additions are a created backend's header and blank
// separators.
func assertOnlyAdded(t *testing.T, in, out []byte) {
	t.Helper()
	userLines := func(data []byte) []string {
		var keep []string
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if _, ok := slotLine(newLine(l)); !ok {
				keep = append(keep, l)
			}
		}
		return keep
	}
	inLines, outLines := userLines(in), userLines(out)
	i := 0
	for _, l := range outLines {
		if i < len(inLines) && l == inLines[i] {
			i++
			continue
		}
		if !strings.HasPrefix(l, "backend ") && l != "" {
			t.Fatalf("line %q is neither the user's nor hapctl's", l)
		}
	}
	if i != len(inLines) {
		t.Fatalf("user line %q lost or changed", inLines[i])
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
