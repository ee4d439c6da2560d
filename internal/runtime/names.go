package runtime

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// MaxNameLen bounds proxy and server names. HAProxy has no hard limit, but a
// name this long is a mistake or an attack, never a real backend.
const MaxNameLen = 128

// ValidName reports whether s can be used as a HAProxy proxy or server name in
// a runtime command or a config line: 1 to MaxNameLen characters out of
// [A-Za-z0-9_.:-], the set HAProxy itself accepts for identifiers. Nothing else
// (no space, ';', '/', newline or quote) can ever reach the socket.
func ValidName(s string) error {
	if s == "" {
		return fmt.Errorf("name is empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("name is %d characters long, more than %d", len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return fmt.Errorf("name %q has character %q at byte %d; allowed: letters, digits, '_', '.', ':', '-'", s, s[i], i)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '_', c == '.', c == ':', c == '-':
		return true
	}
	return false
}

// ValidAddr reports whether a is an address a server may point at: a plain
// IPv4 or IPv6 literal, no zone, not unspecified and not multicast.
// IPv4-mapped IPv6 addresses must be unmapped by the caller first, so that the
// same endpoint always has the same spelling.
func ValidAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("address is not set")
	case a.Zone() != "":
		return fmt.Errorf("address %s has an IPv6 zone, which HAProxy cannot use", a)
	case a.Is4In6():
		return fmt.Errorf("address %s is IPv4-mapped; use %s", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", a)
	case a.IsMulticast():
		return fmt.Errorf("address %s is multicast", a)
	}
	return nil
}

// ValidPort reports whether p is a usable TCP port. HAProxy accepts 0 and
// silently truncates values above 65535, so the check is ours to make.
func ValidPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535", p)
	}
	return nil
}

// MaxWeight is the largest weight HAProxy accepts.
const MaxWeight = 256

// ValidWeight reports whether w is a HAProxy server weight (0-256).
func ValidWeight(w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("weight %d is out of range 0-%d", w, MaxWeight)
	}
	return nil
}

// ownedKeywords are server keywords hapctl sets itself on slot servers.
var ownedKeywords = map[string]string{
	"disabled": "hapctl sets the admin state of every slot",
	"enabled":  "hapctl sets the admin state of every slot",
	"weight":   "weights come from Consul's Weights.Passing",
	"id":       "each slot needs its own id",
}

// ValidOptions checks server keywords appended to a slot's server line or
// `add server` command: plain printable ASCII words, none that would end the
// line, start a comment or a second command, and none of the keywords hapctl
// owns. HAProxy checks the keywords themselves.
func ValidOptions(opts string) error {
	for i, r := range opts {
		switch {
		case r == ';' || r == '#' || r == '\\' || r == '"' || r == '\'':
			return fmt.Errorf("%q has %q at byte %d; options must be plain words", opts, r, i)
		case r > unicode.MaxASCII || (r != ' ' && !unicode.IsPrint(r)):
			return fmt.Errorf("%q has a non-printable or non-ASCII character at byte %d", opts, i)
		}
	}
	for _, word := range strings.Fields(opts) {
		if why, ok := ownedKeywords[word]; ok {
			return fmt.Errorf("%q: %q is not allowed here: %s", opts, word, why)
		}
	}
	return nil
}
