package haproxycfg

import (
	"context"
	"fmt"

	parser "github.com/haproxytech/client-native/v5/config-parser"
	"github.com/haproxytech/client-native/v5/config-parser/types"

	"github.com/hapctl/hapctl/internal/runtime"
)

// DumpState writes HAProxy's `show servers state` of every backend to path,
// atomically, for the new worker of a reload to read back
// (load-server-state-from-file). It restores each server's admin state
// (drain, maint), weight and port; addresses come from the config lines,
// which is why hapctl renders them before a reload.
func DumpState(ctx context.Context, rt Runtime, path string) error {
	res, err := rt.Exec(ctx, runtime.ShowAllServersState())
	if err != nil {
		return fmt.Errorf("reading servers state: %w", err)
	}
	if res[0].Err != nil {
		return res[0].Err
	}
	return writeStateFile(path, res[0].Answer)
}

// ConfigWarnings is what validate, plan and the daemon's start warn of in
// the haproxy config: stateWarnings, then server lines in managed backends
// that are not slots.
func ConfigWarnings(p *Parsed, stateFile string, backends []string) []string {
	out := stateWarnings(p, stateFile, backends)
	for _, b := range backends {
		if w := p.OtherServersWarning(b); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// stateWarnings reports why runtime state would not survive a reload: the
// config's server-state-file is not hapctl's state file, or a managed
// backend does not load it.
func stateWarnings(p *Parsed, stateFile string, backends []string) []string {
	var out []string
	global := ""
	if d, err := p.p.Get(parser.Global, parser.GlobalSectionName, "server-state-file"); err == nil {
		if s, ok := d.(*types.StringC); ok {
			global = s.Value
		}
	}
	switch {
	case stateFile == "":
		return []string{"haproxy.state_file is empty: drains and weights set at runtime are lost on a reload"}
	case global == "":
		out = append(out, fmt.Sprintf("the haproxy config has no `server-state-file %s` in global: drains and weights set at runtime are lost on a reload", stateFile))
	case global != stateFile:
		out = append(out, fmt.Sprintf("the haproxy config's server-state-file is %s but hapctl writes %s (haproxy.state_file): drains and weights set at runtime are lost on a reload", global, stateFile))
	}
	for _, b := range backends {
		if !p.loadsGlobalState(b) {
			out = append(out, fmt.Sprintf("backend %s does not load the state file: add `load-server-state-from-file global` to it or to its defaults", b))
		}
	}
	return out
}

// loadsGlobalState reports whether a backend, or the defaults it uses, has
// load-server-state-from-file global.
func (p *Parsed) loadsGlobalState(backend string) bool {
	for _, sec := range []parser.Section{parser.Backends, parser.Listen} {
		if v, ok := p.word(sec, backend, "load-server-state-from-file"); ok {
			return v == "global"
		}
		from, err := p.p.SectionsDefaultsFromGet(sec, backend)
		if err != nil || from == "" {
			continue
		}
		v, _ := p.word(parser.Defaults, from, "load-server-state-from-file")
		return v == "global"
	}
	return false
}

func (p *Parsed) word(sec parser.Section, name, keyword string) (string, bool) {
	d, err := p.p.Get(sec, name, keyword)
	if err != nil {
		return "", false
	}
	if l, ok := d.(*types.LoadServerStateFromFile); ok {
		return l.Argument, true
	}
	return "", false
}
