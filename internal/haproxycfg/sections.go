// Package haproxycfg edits haproxy.cfg at hapctl's own lines only — the
// slot server lines of managed backends — and leaves every other byte as the
// user wrote it. client-native's parser reads and checks the result; it is
// not used to write, because it re-renders the whole file.
package haproxycfg

import (
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

// text is the file split into sections, each keeping its lines and each
// line its own ending. Edits touch one section's lines only, so a pass over
// many backends costs the size of the file once, not once per backend.
type text struct {
	// blocks are the lines before the first section (possibly none), then
	// one block per section, starting with its header line.
	blocks []*block
	nl     string              // the ending hapctl's new lines take: the one most lines have
	named  map[string][]*block // backend and listen sections by name
}

// block is a run of lines: a section (its header first) or the lines before
// the first one.
type block struct {
	keyword, name string // "" for the lines before the first section
	lines         []line
}

func splitText(data []byte) *text {
	t := &text{blocks: []*block{{}}, named: map[string][]*block{}}
	crlf, lf := 0, 0
	cur := t.blocks[0]
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
		if len(l.fields) > 0 && sectionKeywords[l.fields[0]] {
			cur = &block{keyword: l.fields[0]}
			if len(l.fields) > 1 {
				cur.name = l.fields[1]
			}
			t.add(cur)
		}
		cur.lines = append(cur.lines, l)
		s = rest
	}
	t.nl = "\n"
	if crlf > 0 && crlf >= lf {
		t.nl = "\r\n"
	}
	return t
}

// add appends a section block.
func (t *text) add(b *block) {
	t.blocks = append(t.blocks, b)
	if b.keyword == "backend" || b.keyword == "listen" {
		t.named[b.name] = append(t.named[b.name], b)
	}
}

func (t *text) bytes() []byte {
	n := 0
	for _, b := range t.blocks {
		for _, l := range b.lines {
			n += len(l.text) + len(l.nl)
		}
	}
	out := make([]byte, 0, n)
	for _, b := range t.blocks {
		for _, l := range b.lines {
			out = append(out, l.text...)
			out = append(out, l.nl...)
		}
	}
	return out
}

// allLines returns every line of the file, in order.
func (t *text) allLines() []line {
	var out []line
	for _, b := range t.blocks {
		out = append(out, b.lines...)
	}
	return out
}

// lineNumber is the 1-based line number of b's header.
func (t *text) lineNumber(b *block) int {
	n := 1
	for _, o := range t.blocks {
		if o == b {
			return n
		}
		n += len(o.lines)
	}
	return n
}

// lastLine is the file's last line, nil for an empty file.
func (t *text) lastLine() *line {
	for i := len(t.blocks) - 1; i >= 0; i-- {
		if b := t.blocks[i]; len(b.lines) > 0 {
			return &b.lines[len(b.lines)-1]
		}
	}
	return nil
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

// ended gives l, the line new lines go after, an ending when it has none
// (the file's last line): the file's usual one, or just "\n" after a '\r'
// of its own.
func (t *text) ended(l *line) {
	if l == nil || l.nl != "" {
		return
	}
	l.nl = t.nl
	if strings.HasSuffix(l.text, "\r") {
		l.nl = "\n"
	}
}

// insert returns lines with add inserted at i.
func (t *text) insert(lines []line, i int, add ...line) []line {
	if len(add) > 0 && i > 0 {
		t.ended(&lines[i-1])
	}
	return slices.Insert(lines, i, add...)
}

// newBackend appends a `backend name` section at the end of the file,
// after a blank line when the file ends in content (the blank line goes at
// the end of the previous block), and returns it.
func (t *text) newBackend(name string) *block {
	last := t.lastLine()
	if last != nil && len(last.fields) > 0 {
		prev := t.blocks[len(t.blocks)-1]
		prev.lines = t.insert(prev.lines, len(prev.lines), t.hapctlLine(""))
	} else {
		t.ended(last)
	}
	b := &block{keyword: "backend", name: name, lines: []line{t.hapctlLine("backend " + name)}}
	t.add(b)
	return b
}

// words splits a config line the simple way HAProxy's own keywords need
// here: the first words, up to a comment.
func words(s string) []string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.Fields(s)
}

// sections returns the section blocks, in file order.
func (t *text) sections() []*block { return t.blocks[1:] }

// proxies returns the backend (or listen) sections called name.
func (t *text) proxies(name string) []*block { return t.named[name] }

// proxy finds the first backend (or listen) section called name.
func (t *text) proxy(name string) (*block, bool) {
	if p := t.proxies(name); len(p) > 0 {
		return p[0], true
	}
	return nil, false
}

// managed finds the section of a backend hapctl edits, which must be the
// only one of its name: HAProxy refuses two, and client-native reads the
// last where hapctl would edit the first.
func (t *text) managed(name string) (*block, bool, error) {
	p := t.proxies(name)
	if len(p) > 1 {
		return nil, false, fmt.Errorf("backend %s: declared twice, at lines %d and %d; HAProxy refuses that", name, t.lineNumber(p[0]), t.lineNumber(p[1]))
	}
	if len(p) == 0 {
		return nil, false, nil
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
func (b *block) indentOf() string {
	for _, l := range b.lines[1:] {
		if len(l.fields) > 0 {
			return lineIndent(l.text)
		}
	}
	return "    "
}

// lineIndent returns the leading blanks of a line.
func lineIndent(s string) string { return s[:len(s)-len(strings.TrimLeft(s, " \t"))] }

// lastContent is the index of the section's last line that is not blank or
// a comment; new lines go after it, before comments that introduce the next
// section.
func (b *block) lastContent() int {
	last := 0
	for i, l := range b.lines {
		if i > 0 && len(l.fields) > 0 {
			last = i
		}
	}
	return last
}
