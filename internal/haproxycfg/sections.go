// Package haproxycfg edits haproxy.cfg at hapctl's own lines only — the
// slot server lines of managed backends — and leaves every other byte as the
// user wrote it. client-native's parser reads and checks the result; it is
// not used to write, because it re-renders the whole file.
package haproxycfg

import (
	"bytes"
	"strings"

	"github.com/hapctl/hapctl/internal/slot"
)

// sectionKeywords start a section in HAProxy 2.6+.
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"resolvers": true, "userlist": true, "peers": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "log-forward": true, "cache": true, "fcgi-app": true,
	"crt-store": true, "traces": true,
}

// line is one line of the file, without its line ending.
type line struct {
	text   string
	fields []string // whitespace-separated words before any comment
}

// text is the file split into lines, remembering its line ending.
type text struct {
	lines        []line
	nl           string // "\n" or "\r\n"
	finalNewline bool
}

func splitText(data []byte) *text {
	t := &text{nl: "\n"}
	if bytes.Contains(data, []byte("\r\n")) {
		t.nl = "\r\n"
	}
	s := string(data)
	t.finalNewline = strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" && !t.finalNewline {
		return t
	}
	for _, raw := range strings.Split(s, "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		t.lines = append(t.lines, line{text: raw, fields: words(raw)})
	}
	return t
}

func (t *text) bytes() []byte {
	var b bytes.Buffer
	for i, l := range t.lines {
		b.WriteString(l.text)
		if i < len(t.lines)-1 || t.finalNewline {
			b.WriteString(t.nl)
		}
	}
	return b.Bytes()
}

// words splits a config line the simple way HAProxy's own keywords need
// here: the first words, up to a comment.
func words(s string) []string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.Fields(s)
}

// section is a range of lines: the header at start, content up to end
// (exclusive).
type section struct {
	keyword, name string
	start, end    int
}

func (t *text) sections() []section {
	var out []section
	for i, l := range t.lines {
		if len(l.fields) == 0 || !sectionKeywords[l.fields[0]] {
			continue
		}
		if n := len(out); n > 0 {
			out[n-1].end = i
		}
		s := section{keyword: l.fields[0], start: i, end: len(t.lines)}
		if len(l.fields) > 1 {
			s.name = l.fields[1]
		}
		out = append(out, s)
	}
	return out
}

// proxy finds the backend (or listen) section called name.
func (t *text) proxy(name string) (section, bool) {
	for _, s := range t.sections() {
		if (s.keyword == "backend" || s.keyword == "listen") && s.name == name {
			return s, true
		}
	}
	return section{}, false
}

// slotLine reports whether l is `server srvN ...` and returns N.
func slotLine(l line) (int, bool) {
	if len(l.fields) < 2 || l.fields[0] != "server" {
		return 0, false
	}
	return slot.Index(l.fields[1])
}

// indentOf returns the indentation the section's lines use.
func (t *text) indentOf(s section) string {
	for i := s.start + 1; i < s.end; i++ {
		if len(t.lines[i].fields) > 0 {
			return lineIndent(t.lines[i].text)
		}
	}
	return "    "
}

// lineIndent returns the leading blanks of a line.
func lineIndent(s string) string { return s[:len(s)-len(strings.TrimLeft(s, " \t"))] }

// lastContent is the index of the section's last line that is not blank or
// a comment; new lines go after it, before comments that introduce the next
// section.
func (t *text) lastContent(s section) int {
	last := s.start
	for i := s.start + 1; i < s.end; i++ {
		if len(t.lines[i].fields) > 0 {
			last = i
		}
	}
	return last
}
