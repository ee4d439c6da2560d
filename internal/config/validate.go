package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/hapctl/hapctl/internal/runtime"
)

// MaxSlotsLimit bounds max_slots: beyond it a backend is a mistake.
const MaxSlotsLimit = 65536

// Validate checks the whole configuration and returns every problem found,
// one per line, each naming its key.
func (c *Config) Validate() error {
	var v validator
	c.validateConsul(&v)
	c.validateHAProxy(&v)
	c.validateAPI(&v)
	if len(c.Backends) == 0 {
		v.add("backends", "at least one backend is needed")
	}
	names := map[string]int{}
	for i := range c.Backends {
		b := &c.Backends[i]
		key := fmt.Sprintf("backends[%d]", i)
		if b.Name != "" {
			key += " (" + b.Name + ")"
		}
		if j, dup := names[b.Name]; dup && b.Name != "" {
			v.add(key+".name", "%q is also backends[%d]; each backend is managed once", b.Name, j)
		}
		names[b.Name] = i
		b.validate(&v, key)
	}
	return v.err()
}

type validator struct{ problems []string }

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, key+": "+fmt.Sprintf(format, args...))
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{Problems: v.problems}
}

// Error lists every problem of an invalid configuration.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid config: " + e.Problems[0]
	}
	return "invalid config:\n  " + strings.Join(e.Problems, "\n  ")
}

func (c *Config) validateConsul(v *validator) {
	if err := checkConsulAddress(c.Consul.Address); err != nil {
		v.add("consul.address", "%v", err)
	}
	if c.Consul.Datacenter != "" && !isIdent(c.Consul.Datacenter, "_.-") {
		v.add("consul.datacenter", "%q may hold only letters, digits, '_', '.', '-'", c.Consul.Datacenter)
	}
	if !isIdent(c.Consul.KVPrefix, "_.-/") || strings.Contains(c.Consul.KVPrefix, "//") {
		v.add("consul.kv_prefix", "%q must be a KV path of letters, digits, '_', '.', '-' and single '/'", c.Consul.KVPrefix)
	}
	if hasControl(c.Consul.Token) {
		v.add("consul.token", "contains control characters")
	}
}

func checkConsulAddress(addr string) error {
	if addr == "" {
		return errors.New("is empty")
	}
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		switch scheme {
		case "http", "https":
			u, err := url.Parse(addr)
			if err != nil || u.Host == "" {
				return fmt.Errorf("%q is not a valid URL", addr)
			}
			return nil
		case "unix":
			if rest == "" {
				return fmt.Errorf("%q names no socket path", addr)
			}
			if hasControl(rest) {
				return fmt.Errorf("%q: the socket path contains control characters", addr)
			}
			return nil
		}
		return fmt.Errorf("%q: scheme must be http, https or unix", addr)
	}
	return checkHostPort(addr)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v)", addr, err)
	}
	if hasControl(host) || strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has an invalid host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return nil
}

func (c *Config) validateHAProxy(v *validator) {
	for _, f := range []struct{ key, val string }{
		{"haproxy.config_file", c.HAProxy.ConfigFile},
		{"haproxy.runtime_socket", c.HAProxy.RuntimeSocket},
		{"haproxy.master_socket", c.HAProxy.MasterSocket},
		{"haproxy.binary", c.HAProxy.Binary},
	} {
		if f.val == "" {
			v.add(f.key, "is empty")
		} else if hasControl(f.val) {
			v.add(f.key, "contains control characters")
		}
	}
	if hasControl(c.HAProxy.StateFile) {
		v.add("haproxy.state_file", "contains control characters")
	}
	if c.HAProxy.ReloadMinInterval < 0 {
		v.add("haproxy.reload_min_interval", "must not be negative, got %s", c.HAProxy.ReloadMinInterval)
	}
}

func (c *Config) validateAPI(v *validator) {
	if hasControl(c.API.Token) {
		v.add("api.token", "contains control characters")
	}
	listen := c.API.Listen
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		if path == "" {
			v.add("api.listen", "%q names no socket path", listen)
		} else if hasControl(path) {
			v.add("api.listen", "%q: the socket path contains control characters", listen)
		}
		return
	}
	if err := checkHostPortAllowEmptyHost(listen); err != nil {
		v.add("api.listen", "%v (want host:port or unix:/path)", err)
		return
	}
	if c.API.Token == "" && !IsLoopback(listen) {
		v.add("api.listen", "%s is not a loopback address and no token is set: set api.token (or HAPCTL_TOKEN), or listen on 127.0.0.1 or a unix: socket", listen)
	}
}

func checkHostPortAllowEmptyHost(addr string) error {
	if strings.HasPrefix(addr, ":") {
		return checkHostPort("0.0.0.0" + addr)
	}
	return checkHostPort(addr)
}

// IsLoopback reports whether a host:port listen address binds only loopback.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (b *Backend) validate(v *validator, key string) {
	if err := runtime.ValidName(b.Name); err != nil {
		v.add(key+".name", "%v", err)
	}
	if b.Service == "" {
		v.add(key+".service", "is empty: name the Consul service")
	} else if !isIdent(b.Service, "_.-") || len(b.Service) > 255 {
		v.add(key+".service", "%q may hold only letters, digits, '_', '.', '-' (at most 255)", b.Service)
	}
	for i, tag := range b.Tags {
		if tag == "" || hasControl(tag) || len(tag) > 255 {
			v.add(fmt.Sprintf("%s.tags[%d]", key, i), "%q must be 1-255 printable characters", tag)
		}
	}
	if b.MinSlots < 1 {
		v.add(key+".min_slots", "must be at least 1, got %d", b.MinSlots)
	}
	if b.MaxSlots < 1 || b.MaxSlots > MaxSlotsLimit {
		v.add(key+".max_slots", "must be between 1 and %d, got %d", MaxSlotsLimit, b.MaxSlots)
	} else if b.MinSlots > b.MaxSlots {
		v.add(key+".max_slots", "%d is below min_slots %d", b.MaxSlots, b.MinSlots)
	}
	if err := CheckServerOptions(b.ServerOptions); err != nil {
		v.add(key+".server_options", "%v", err)
	}
	if b.RemovalGrace < 0 {
		v.add(key+".removal_grace", "must not be negative, got %s", b.RemovalGrace)
	}
	if b.ShrinkAfter < 0 {
		v.add(key+".shrink_after", "must not be negative, got %s", b.ShrinkAfter)
	}
	if b.Growth != GrowthDynamic && b.Growth != GrowthReload {
		v.add(key+".growth", "%q is not %q or %q", b.Growth, GrowthDynamic, GrowthReload)
	}
}

func isIdent(s, extra string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(extra, r))) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
