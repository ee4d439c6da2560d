package haproxycfg

import (
	"fmt"
	"slices"
	"strings"

	parser "github.com/haproxytech/client-native/v5/config-parser"
	"github.com/haproxytech/client-native/v5/config-parser/types"
)

// dynamicRefused are server keywords HAProxy 2.6 refuses on `add server`.
var dynamicRefused = []string{"cookie", "resolvers", "init-addr"}

// DynamicSupport says why a backend cannot take servers added at runtime
// (`add server`), or "" when it can as far as the config tells: its balance
// algorithm must be dynamic (not static-rr, and a hash only with
// `hash-type consistent`), and server_options must not use a keyword
// dynamic servers refuse. HAProxy has the last word: a refused `add server`
// also makes hapctl fall back to reloads.
func (p *Parsed) DynamicSupport(backend, options string) string {
	for _, w := range strings.Fields(options) {
		if slices.Contains(dynamicRefused, w) {
			return fmt.Sprintf("server_options use %q, which HAProxy refuses for dynamic servers", w)
		}
	}
	algo, hash := p.balanceOf(backend)
	switch algo {
	case "", "roundrobin", "leastconn", "first", "random":
		return ""
	case "static-rr":
		return "balance static-rr cannot take dynamic servers"
	}
	if hash != "consistent" {
		return fmt.Sprintf("balance %s with map-based hashing cannot take dynamic servers (hash-type consistent can)", algo)
	}
	return ""
}

// DefaultServer reports whether a backend (or the defaults it uses) has a
// `default-server` line: servers added at runtime do not inherit it.
func (p *Parsed) DefaultServer(backend string) bool {
	for _, sec := range []parser.Section{parser.Backends, parser.Listen} {
		names, _ := p.p.SectionsGet(sec)
		if !slices.Contains(names, backend) {
			continue
		}
		if _, err := p.p.Get(sec, backend, "default-server"); err == nil {
			return true
		}
		if from, _ := p.p.SectionsDefaultsFromGet(sec, backend); from != "" {
			if _, err := p.p.Get(parser.Defaults, from, "default-server"); err == nil {
				return true
			}
		}
	}
	return false
}

// balanceOf returns a backend's balance algorithm and hash-type method,
// from its section or the defaults section it uses (for a backend the file
// does not have yet: the last defaults section, which it will follow).
func (p *Parsed) balanceOf(backend string) (algo, hash string) {
	for _, sec := range []parser.Section{parser.Backends, parser.Listen} {
		names, _ := p.p.SectionsGet(sec)
		if !slices.Contains(names, backend) {
			continue
		}
		from, _ := p.p.SectionsDefaultsFromGet(sec, backend)
		value := func(keyword string) any {
			if d, err := p.p.Get(sec, backend, keyword); err == nil {
				return d
			}
			if from == "" {
				return nil
			}
			d, _ := p.p.Get(parser.Defaults, from, keyword)
			return d
		}
		if b, ok := value("balance").(*types.Balance); ok && b != nil {
			algo = b.Algorithm
		}
		if h, ok := value("hash-type").(*types.HashType); ok && h != nil {
			hash = h.Method
		}
		return algo, hash
	}
	t := splitText(p.data)
	var last *block
	for _, s := range t.sections() {
		if s.keyword == "defaults" {
			last = s
		}
	}
	if last == nil {
		return "", ""
	}
	for _, l := range last.lines[1:] {
		f := l.fields
		switch {
		case len(f) >= 2 && f[0] == "balance":
			algo, _, _ = strings.Cut(f[1], "(")
		case len(f) >= 2 && f[0] == "hash-type":
			for _, w := range f[1:] {
				if w == "consistent" || w == "map-based" {
					hash = w
				}
			}
		}
	}
	return algo, hash
}
