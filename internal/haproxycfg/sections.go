// Package haproxycfg edits haproxy.cfg at hapctl's own lines only — the
// slot server lines of managed backends — and leaves every other byte as the
// user wrote it. client-native's parser reads and checks the result; it is
// not used to write, because it re-renders the whole file.
package haproxycfg

import (
	"bytes"
	"fmt"
	"slices"
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

// line is one line of the file.
type line struct {
	text   string
	fields []string // whitespace-separated words before any comment
	nl     string   // its own ending: "\n", "\r\n", or "" for a last line without one
}

// text is the file split into lines, each keeping its own line ending.
type text struct {
	lines []line
	nl    string // the ending hapctl's new lines take: the one most lines have
}

func splitText(data []byte) *text {
	t := &text{}
	crlf, lf := 0, 0
	for s := string(data); s != ""; {
		raw, rest, found := strings.Cut(s, "\n")
		l := line{}
		switch {
		case !found:
		case strings.HasSuffix(raw, "\r"):
			raw, l.nl = raw[:len(raw)-1], "\r\n"
			crlf++
		default:
			l.nl = "\n"
			lf++
		}
		l.text, l.fields = raw, words(raw)
		t.lines = append(t.lines, l)
		s = rest
	}
	t.nl = "\n"
	if crlf > 0 && crlf >= lf {
		t.nl = "\r\n"
	}
	return t
}

func (t *text) bytes() []byte {
	var b bytes.Buffer
	for _, l := range t.lines {
		b.WriteString(l.text)
		b.WriteString(l.nl)
	}
	return b.Bytes()
}

// newLine is a line of text s, without an ending.
func newLine(s string) line { return line{text: s, fields: words(s)} }

// hapctlLine is a new line of hapctl's, ending as most of the file's lines do.
func (t *text) hapctlLine(s string) line {
	l := newLine(s)
	l.nl = t.nl
	return l
}

// withText is l rewritten to s, keeping l's ending.
func (l line) withText(s string) line {
	n := newLine(s)
	n.nl = l.nl
	return n
}

// insert returns lines with add inserted at i. A last line without an
// ending that gets lines after it gets one first: the file's usual one, or
// just "\n" after a '\r' of its own.
func (t *text) insert(lines []line, i int, add ...line) []line {
	if len(add) > 0 && i > 0 && lines[i-1].nl == "" {
		lines[i-1].nl = t.nl
		if strings.HasSuffix(lines[i-1].text, "\r") {
			lines[i-1].nl = "\n"
		}
	}
	return slices.Insert(lines, i, add...)
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

// proxies returns the backend (or listen) sections called name.
func (t *text) proxies(name string) []section {
	var out []section
	for _, s := range t.sections() {
		if (s.keyword == "backend" || s.keyword == "listen") && s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// proxy finds the first backend (or listen) section called name.
func (t *text) proxy(name string) (section, bool) {
	if p := t.proxies(name); len(p) > 0 {
		return p[0], true
	}
	return section{}, false
}

// managed finds the section of a backend hapctl edits, which must be the
// only one of its name: HAProxy refuses two, and client-native reads the
// last where hapctl would edit the first.
func (t *text) managed(name string) (section, bool, error) {
	p := t.proxies(name)
	if len(p) > 1 {
		return section{}, false, fmt.Errorf("backend %s: declared twice, at lines %d and %d; HAProxy refuses that", name, p[0].start+1, p[1].start+1)
	}
	if len(p) == 0 {
		return section{}, false, nil
	}
	return p[0], true, nil
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
