// Package consul watches Consul for the passing instances of each managed
// backend's service and validates every value before anything else sees it.
package consul

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
)

// Limits on values from Consul; beyond them an instance is skipped.
const (
	MaxIDLen   = 256
	MaxTagLen  = 512
	MaxTags    = 256
	MaxNodeLen = 256
)

// Instance is one passing, validated instance of a service.
type Instance struct {
	ID     string // Consul service ID
	Node   string
	Addr   netip.Addr
	Port   int
	Weight int // Weights.Passing clamped to HAProxy's 0-256
	Tags   []string
}

// Endpoint is the instance's address and port; it identifies the instance in
// HAProxy, where a slot only knows an address.
func (i Instance) Endpoint() netip.AddrPort { return netip.AddrPortFrom(i.Addr, uint16(i.Port)) }

// Invalid is an instance that was skipped, and why.
type Invalid struct {
	ID     string // quoted when it holds unsafe characters, so it can be logged
	Node   string
	Reason string
}

// FromEntries validates health entries. It returns the valid instances sorted
// by ID, and the invalid ones. Two instances with one endpoint cannot both
// have a slot: the one registered first (lowest CreateIndex, then ID) keeps
// it, so a later registration of the same address and port can never take
// over an instance's slot, weight or drain.
func FromEntries(entries []*api.ServiceEntry) (valid []Instance, invalid []Invalid) {
	type candidate struct {
		inst    Instance
		created uint64
	}
	cands := make([]candidate, 0, len(entries))
	for _, e := range entries {
		inst, err := fromEntry(e)
		if err != nil {
			invalid = append(invalid, Invalid{ID: printable(entryID(e)), Node: printable(entryNode(e)), Reason: err.Error()})
			continue
		}
		cands = append(cands, candidate{inst, e.Service.CreateIndex})
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.created, b.created), strings.Compare(a.inst.ID, b.inst.ID), strings.Compare(a.inst.Node, b.inst.Node))
	})
	seen := make(map[netip.AddrPort]string, len(cands))
	valid = make([]Instance, 0, len(cands))
	for _, c := range cands {
		if other, dup := seen[c.inst.Endpoint()]; dup {
			invalid = append(invalid, Invalid{ID: c.inst.ID, Node: c.inst.Node,
				Reason: fmt.Sprintf("endpoint %s is already instance %q, registered earlier", c.inst.Endpoint(), other)})
			continue
		}
		seen[c.inst.Endpoint()] = c.inst.ID
		valid = append(valid, c.inst)
	}
	slices.SortFunc(valid, func(a, b Instance) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Node, b.Node))
	})
	return valid, invalid
}

func entryID(e *api.ServiceEntry) string {
	if e == nil || e.Service == nil {
		return ""
	}
	return e.Service.ID
}

func entryNode(e *api.ServiceEntry) string {
	if e == nil || e.Node == nil {
		return ""
	}
	return e.Node.Node
}

func fromEntry(e *api.ServiceEntry) (Instance, error) {
	if e == nil || e.Service == nil {
		return Instance{}, errors.New("entry has no service")
	}
	s := e.Service
	if err := ValidID(s.ID); err != nil {
		return Instance{}, fmt.Errorf("service ID: %w", err)
	}
	node := entryNode(e)
	if err := validText(node, MaxNodeLen); err != nil {
		return Instance{}, fmt.Errorf("node name: %w", err)
	}
	if len(s.Tags) > MaxTags {
		return Instance{}, fmt.Errorf("%d tags, more than %d", len(s.Tags), MaxTags)
	}
	for i, tag := range s.Tags {
		if err := validText(tag, MaxTagLen); err != nil {
			return Instance{}, fmt.Errorf("tag %d: %w", i, err)
		}
	}
	addrText, from := s.Address, "service address"
	if addrText == "" && e.Node != nil {
		addrText, from = e.Node.Address, "node address"
	}
	addr, err := ParseAddr(addrText)
	if err != nil {
		return Instance{}, fmt.Errorf("%s: %w", from, err)
	}
	if err := runtime.ValidPort(s.Port); err != nil {
		return Instance{}, err
	}
	return Instance{ID: s.ID, Node: node, Addr: addr, Port: s.Port, Weight: weight(s.Weights), Tags: s.Tags}, nil
}

// ParseAddr accepts an IPv4 or IPv6 literal, nothing else: no hostname, no
// port, no zone, no spaces. IPv4-mapped IPv6 is unmapped.
func ParseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, errors.New("address is empty")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s is not an IP address (hostnames are not resolved)", strconv.Quote(Clip(s)))
	}
	a = a.Unmap()
	if err := runtime.ValidAddr(a); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// weight maps Consul's Weights.Passing to a HAProxy weight. Consul refuses a
// passing weight below 1 at registration, so 0 means "not set": HAProxy's
// default weight 1.
func weight(w api.AgentWeights) int {
	switch {
	case w.Passing == 0:
		return 1
	case w.Passing < 0:
		return 0
	case w.Passing > runtime.MaxWeight:
		return runtime.MaxWeight
	}
	return w.Passing
}

// ValidID reports whether id can name an instance in logs, the API and KV
// keys: 1 to MaxIDLen characters out of letters, digits and _ . : @ + = -.
func ValidID(id string) error {
	if id == "" {
		return errors.New("is empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(id), MaxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%q is a path element, not a name", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:@+=-", c) >= 0
		if !ok {
			return fmt.Errorf("%s has character %q at byte %d", strconv.Quote(Clip(id)), c, i)
		}
	}
	return nil
}

func validText(s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", strconv.Quote(Clip(s)))
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%s has a control character at byte %d", strconv.Quote(Clip(s)), i)
	}
	return nil
}

// printable makes an untrusted value safe to log and show: quoted when it is
// not plain.
func printable(s string) string {
	if ValidID(s) == nil {
		return s
	}
	return strconv.Quote(Clip(s))
}

// Clip shortens an untrusted value to 64 bytes for a message.
func Clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
