package haproxycfg

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// Placeholder is where a free slot points (slot.Placeholder).
const Placeholder = slot.Placeholder

// PlaceholderEndpoint is Placeholder parsed.
var PlaceholderEndpoint = slot.PlaceholderEndpoint

// SlotSpec says how many slots a backend must have and what every slot
// line carries.
type SlotSpec struct {
	Backend string
	Slots   int
	Options string // server_options, already validated
}

// Change describes what EnsureSlots did to one backend.
type Change struct {
	Backend string
	Created bool     // the backend section was appended
	Added   []string // slot servers added
	Updated []string // slot lines whose server_options changed
}

func (c Change) String() string {
	var parts []string
	if c.Created {
		parts = append(parts, "creates backend "+c.Backend)
	}
	if len(c.Added) > 0 {
		parts = append(parts, "adds "+listNames(c.Added))
	}
	if len(c.Updated) > 0 {
		parts = append(parts, "sets the new server_options on "+listNames(c.Updated))
	}
	return c.Backend + ": " + strings.Join(parts, ", ")
}

func listNames(names []string) string {
	if len(names) > 4 {
		return fmt.Sprintf("%s … %s (%d slots)", names[0], names[len(names)-1], len(names))
	}
	return strings.Join(names, ", ")
}

// SpecsFor returns the bootstrap slot specs of the configured backends.
func SpecsFor(backends []config.Backend) []SlotSpec {
	out := make([]SlotSpec, len(backends))
	for i, b := range backends {
		out[i] = SlotSpec{Backend: b.Name, Slots: b.MinSlots, Options: b.ServerOptions}
	}
	return out
}

// SlotLine renders the line of a free slot.
func SlotLine(indent string, index int, options string) string {
	s := indent + "server " + slot.Name(index) + " " + Placeholder + " disabled"
	if options != "" {
		s += " " + options
	}
	return s
}

// EnsureSlots returns data with every backend holding at least its slot
// lines srv1..srvN, adding missing lines (free, in maint) after the
// backend's last slot line, or at the end of its content, and appending a
// backend section that does not exist. Existing slot lines are kept as they
// are, and so is every other line. Nothing changes when nothing is missing.
func EnsureSlots(data []byte, specs []SlotSpec) ([]byte, []Change, error) {
	t := splitText(data)
	var changes []Change
	for _, spec := range specs {
		if err := runtime.ValidName(spec.Backend); err != nil {
			return nil, nil, fmt.Errorf("backend %q: %w", spec.Backend, err)
		}
		if err := config.CheckServerOptions(spec.Options); err != nil {
			return nil, nil, fmt.Errorf("backend %s: server_options: %w", spec.Backend, err)
		}
		if spec.Slots < 0 || spec.Slots > slot.MaxIndex {
			return nil, nil, fmt.Errorf("backend %s: %d slots is outside 0..%d", spec.Backend, spec.Slots, slot.MaxIndex)
		}
		sec, ok, err := t.managed(spec.Backend)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			c := Change{Backend: spec.Backend, Created: true}
			sec := t.newBackend(spec.Backend)
			for i := 1; i <= spec.Slots; i++ {
				sec.lines = append(sec.lines, t.hapctlLine(SlotLine("    ", i, spec.Options)))
				c.Added = append(c.Added, slot.Name(i))
			}
			changes = append(changes, c)
			continue
		}
		have := map[int]bool{}
		insertAt := -1
		c := Change{Backend: spec.Backend}
		for i := 1; i < len(sec.lines); i++ {
			n, ok := slotLine(sec.lines[i])
			if !ok {
				continue
			}
			have[n] = true
			insertAt = i + 1
			if text, changed := withOptions(sec.lines[i].text, spec.Options); changed {
				sec.lines[i] = sec.lines[i].withText(text)
				c.Updated = append(c.Updated, slot.Name(n))
			}
		}
		if insertAt < 0 {
			insertAt = sec.lastContent() + 1
		}
		indent := sec.indentOf()
		var add []line
		for i := 1; i <= spec.Slots; i++ {
			if !have[i] {
				add = append(add, t.hapctlLine(SlotLine(indent, i, spec.Options)))
				c.Added = append(c.Added, slot.Name(i))
			}
		}
		sec.lines = t.insert(sec.lines, insertAt, add...)
		if len(c.Added) > 0 || len(c.Updated) > 0 {
			changes = append(changes, c)
		}
	}
	if len(changes) == 0 {
		return data, nil, nil
	}
	return t.bytes(), changes, nil
}

// withOptions returns a slot line carrying options instead of the ones it
// has, keeping its address, `disabled` and `weight N` (and a trailing
// comment); changed is false when the line already carries them.
func withOptions(text, options string) (string, bool) {
	body, comment := text, ""
	if i := strings.IndexByte(text, '#'); i >= 0 {
		body, comment = text[:i], " "+text[i:]
	}
	f := strings.Fields(body)
	if len(f) < 3 {
		return text, false
	}
	kept := f[:3] // server srvN address
	var rest []string
	for i := 3; i < len(f); i++ {
		switch {
		case f[i] == "disabled":
			kept = append(kept, f[i])
		case f[i] == "weight" && i+1 < len(f):
			kept = append(kept, f[i], f[i+1])
			i++
		default:
			rest = append(rest, f[i])
		}
	}
	if strings.Join(rest, " ") == strings.Join(strings.Fields(options), " ") {
		return text, false
	}
	indent := lineIndent(text)
	line := indent + strings.Join(kept, " ")
	if options != "" {
		line += " " + options
	}
	return line + comment, true
}

// SlotsInFile returns the slot numbers the backend's section has in the
// file. (A pass over many backends uses a File.)
func SlotsInFile(data []byte, backend string) []int { return NewFile(data).SlotsIn(backend) }

// File is haproxy.cfg split into sections once, for passes that read or
// edit many backends: each call then costs the size of its backend's
// section, not of the whole file. (At 500 backends of 64 slots, splitting
// the file once per backend took half of hapctl's start-up CPU.)
type File struct{ t *text }

// NewFile splits data into sections.
func NewFile(data []byte) *File { return &File{t: splitText(data)} }

// Bytes renders the file with its edits.
func (f *File) Bytes() []byte { return f.t.bytes() }

// SlotsIn returns the slot numbers the backend's section has.
func (f *File) SlotsIn(backend string) []int {
	sec, ok := f.t.proxy(backend)
	if !ok {
		return nil
	}
	var out []int
	for _, l := range sec.lines[1:] {
		if n, ok := slotLine(l); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// SlotState is what a slot line is rendered from: the slot as HAProxy runs
// it.
type SlotState struct {
	Index    int
	Endpoint netip.AddrPort
	Weight   int
	Maint    bool
}

// RenderSlotLine renders the line of a slot from its state: its address and
// weight, and `disabled` when it is in maint, so that HAProxy started or
// reloaded from the file serves the same servers. (A reload restores admin
// state, weight and port from the server-state file, but never an IP
// server's address: that comes from the line.) The weight is always written,
// so that no default-server weight changes it.
func RenderSlotLine(indent string, s SlotState, options string) (string, error) {
	if s.Index < 1 || s.Index > slot.MaxIndex {
		// srv0 or srv1000000 is no slot name: the line would never be found
		// again, and added once more at every pass.
		return "", fmt.Errorf("slot index %d is outside 1..%d", s.Index, slot.MaxIndex)
	}
	if err := runtime.ValidAddr(s.Endpoint.Addr()); err != nil {
		return "", fmt.Errorf("%s: %w", slot.Name(s.Index), err)
	}
	if err := runtime.ValidPort(int(s.Endpoint.Port())); err != nil {
		return "", fmt.Errorf("%s: %w", slot.Name(s.Index), err)
	}
	if err := runtime.ValidWeight(s.Weight); err != nil {
		return "", fmt.Errorf("%s: %w", slot.Name(s.Index), err)
	}
	line := indent + "server " + slot.Name(s.Index) + " " + s.Endpoint.String()
	if s.Maint {
		line += " disabled"
	}
	line += " weight " + strconv.Itoa(s.Weight)
	if options != "" {
		line += " " + options
	}
	return line, nil
}

// RefreshSlots rewrites the backend's existing slot lines that have a
// state in states (by slot number); other lines stay as they are.
func RefreshSlots(data []byte, backend string, states map[int]SlotState, options string) ([]byte, error) {
	f := NewFile(data)
	if err := f.RefreshSlots(backend, states, options); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

// RefreshSlots is the package's RefreshSlots on f.
func (f *File) RefreshSlots(backend string, states map[int]SlotState, options string) error {
	if err := config.CheckServerOptions(options); err != nil {
		return fmt.Errorf("backend %s: server_options: %w", backend, err)
	}
	sec, ok, err := f.t.managed(backend)
	if err != nil || !ok {
		return err
	}
	for i := 1; i < len(sec.lines); i++ {
		n, ok := slotLine(sec.lines[i])
		if !ok {
			continue
		}
		st, ok := states[n]
		if !ok {
			continue
		}
		text, err := RenderSlotLine(lineIndent(sec.lines[i].text), st, options)
		if err != nil {
			return fmt.Errorf("backend %s: %w", backend, err)
		}
		sec.lines[i] = sec.lines[i].withText(text)
	}
	return nil
}

// SetSlots makes the backend's slot lines exactly states (each rendered by
// RenderSlotLine): an existing slot line is rewritten in place, a slot line
// whose number is not in states is removed, and a state without a line gets
// one after the backend's last slot line (or at the end of its content; a
// backend that does not exist is appended). Every other line stays as it
// is.
func SetSlots(data []byte, backend string, states []SlotState, options string) ([]byte, error) {
	f := NewFile(data)
	if err := f.SetSlots(backend, states, options); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

// SetSlots is the package's SetSlots on f.
func (f *File) SetSlots(backend string, states []SlotState, options string) error {
	if err := runtime.ValidName(backend); err != nil {
		return fmt.Errorf("backend %q: %w", backend, err)
	}
	if err := config.CheckServerOptions(options); err != nil {
		return fmt.Errorf("backend %s: server_options: %w", backend, err)
	}
	byIndex := make(map[int]SlotState, len(states))
	for _, s := range states {
		if _, dup := byIndex[s.Index]; dup {
			return fmt.Errorf("backend %s: slot %s given twice", backend, slot.Name(s.Index))
		}
		byIndex[s.Index] = s
	}
	t := f.t
	sec, ok, err := t.managed(backend)
	if err != nil {
		return err
	}
	if !ok {
		sec = t.newBackend(backend)
	}
	indent := sec.indentOf()
	out := make([]line, 0, len(sec.lines)+len(states))
	out = append(out, sec.lines[0])
	done := make(map[int]bool, len(states))
	insertAt := -1
	lastContent := 0
	for _, l := range sec.lines[1:] {
		n, isSlot := slotLine(l)
		if !isSlot {
			out = append(out, l)
			if len(l.fields) > 0 {
				lastContent = len(out) - 1
			}
			continue
		}
		st, keep := byIndex[n]
		if !keep || done[n] {
			continue // dropped (or a duplicate line, which HAProxy would refuse)
		}
		text, err := RenderSlotLine(lineIndent(l.text), st, options)
		if err != nil {
			return fmt.Errorf("backend %s: %w", backend, err)
		}
		done[n] = true
		out = append(out, l.withText(text))
		insertAt = len(out)
		lastContent = len(out) - 1
	}
	if insertAt < 0 {
		insertAt = lastContent + 1
	}
	var add []line
	for _, s := range states {
		if done[s.Index] {
			continue
		}
		text, err := RenderSlotLine(indent, s, options)
		if err != nil {
			return fmt.Errorf("backend %s: %w", backend, err)
		}
		done[s.Index] = true
		add = append(add, t.hapctlLine(text))
	}
	sec.lines = t.insert(out, insertAt, add...)
	return nil
}
