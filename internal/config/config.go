// Package config loads and validates hapctl's YAML configuration (README.md,
// "Configuration"). Load applies defaults and the environment
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, HAPCTL_TOKEN); Validate reports every
// problem at once, each naming its key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Growth modes of a backend.
const (
	GrowthDynamic = "dynamic"
	GrowthReload  = "reload"
)

// Defaults, as README.md documents them.
const (
	DefaultConsulAddress     = "127.0.0.1:8500"
	DefaultKVPrefix          = "hapctl"
	DefaultConfigFile        = "/etc/haproxy/haproxy.cfg"
	DefaultRuntimeSocket     = "/run/haproxy/admin.sock"
	DefaultMasterSocket      = "/run/haproxy/master.sock"
	DefaultStateFile         = "/var/lib/haproxy/server-state"
	DefaultBinary            = "/usr/sbin/haproxy"
	DefaultReloadMinInterval = 2 * time.Second
	DefaultListen            = "127.0.0.1:9680"
	DefaultMinSlots          = 8
	DefaultMaxSlots          = 1024
	DefaultShrinkAfter       = 10 * time.Minute
)

// Config is hapctl's configuration with every default applied.
type Config struct {
	Consul   Consul
	HAProxy  HAProxy
	API      API
	Backends []Backend
}

// Consul is where instances and drains come from.
type Consul struct {
	Address    string
	Token      string
	Datacenter string
	AllowStale bool
	KVPrefix   string
}

// HAProxy is the HAProxy hapctl drives.
type HAProxy struct {
	ConfigFile        string
	RuntimeSocket     string
	MasterSocket      string
	StateFile         string
	Binary            string
	ReloadMinInterval time.Duration
}

// API is the admin API.
type API struct {
	Listen string
	Token  string
}

// Backend is one HAProxy backend whose server lines hapctl owns.
type Backend struct {
	Name          string
	Service       string
	Tags          []string
	MinSlots      int
	MaxSlots      int
	ServerOptions string
	RemovalGrace  time.Duration
	Growth        string
	ShrinkAfter   time.Duration
	EmptyGuard    bool
}

// file mirrors the YAML; pointers tell "absent" (take the default) from an
// explicit zero (validate it).
type file struct {
	Consul   fileConsul    `yaml:"consul"`
	HAProxy  fileHAProxy   `yaml:"haproxy"`
	API      fileAPI       `yaml:"api"`
	Backends []fileBackend `yaml:"backends"`
}

type fileConsul struct {
	Address    *string `yaml:"address"`
	Token      *string `yaml:"token"`
	Datacenter string  `yaml:"datacenter"`
	AllowStale bool    `yaml:"allow_stale"`
	KVPrefix   *string `yaml:"kv_prefix"`
}

type fileHAProxy struct {
	ConfigFile        *string        `yaml:"config_file"`
	RuntimeSocket     *string        `yaml:"runtime_socket"`
	MasterSocket      *string        `yaml:"master_socket"`
	StateFile         *string        `yaml:"state_file"`
	Binary            *string        `yaml:"binary"`
	ReloadMinInterval *time.Duration `yaml:"reload_min_interval"`
}

type fileAPI struct {
	Listen *string `yaml:"listen"`
	Token  *string `yaml:"token"`
}

type fileBackend struct {
	Name          string         `yaml:"name"`
	Service       string         `yaml:"service"`
	Tags          []string       `yaml:"tags"`
	MinSlots      *int           `yaml:"min_slots"`
	MaxSlots      *int           `yaml:"max_slots"`
	ServerOptions string         `yaml:"server_options"`
	RemovalGrace  *time.Duration `yaml:"removal_grace"`
	Growth        *string        `yaml:"growth"`
	ShrinkAfter   *time.Duration `yaml:"shrink_after"`
	EmptyGuard    *bool          `yaml:"empty_guard"`
}

// Load reads, defaults and validates the configuration at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(data, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML, applies defaults (getenv supplies the environment) and
// validates the result.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty: at least one backend is needed")
		}
		return nil, yamlError(err)
	}
	cfg := resolve(&f, getenv)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func resolve(f *file, getenv func(string) string) *Config {
	c := &Config{
		Consul: Consul{
			Address:    pick(f.Consul.Address, getenv("CONSUL_HTTP_ADDR"), DefaultConsulAddress),
			Token:      pick(f.Consul.Token, getenv("CONSUL_HTTP_TOKEN"), ""),
			Datacenter: f.Consul.Datacenter,
			AllowStale: f.Consul.AllowStale,
			KVPrefix:   strings.Trim(pick(f.Consul.KVPrefix, "", DefaultKVPrefix), "/"),
		},
		HAProxy: HAProxy{
			ConfigFile:        pick(f.HAProxy.ConfigFile, "", DefaultConfigFile),
			RuntimeSocket:     pick(f.HAProxy.RuntimeSocket, "", DefaultRuntimeSocket),
			MasterSocket:      pick(f.HAProxy.MasterSocket, "", DefaultMasterSocket),
			StateFile:         pick(f.HAProxy.StateFile, "", DefaultStateFile),
			Binary:            pick(f.HAProxy.Binary, "", DefaultBinary),
			ReloadMinInterval: orDefault(f.HAProxy.ReloadMinInterval, DefaultReloadMinInterval),
		},
		API: API{
			Listen: pick(f.API.Listen, "", DefaultListen),
			Token:  pick(f.API.Token, getenv("HAPCTL_TOKEN"), ""),
		},
	}
	for _, b := range f.Backends {
		c.Backends = append(c.Backends, Backend{
			Name:          b.Name,
			Service:       b.Service,
			Tags:          b.Tags,
			MinSlots:      orDefault(b.MinSlots, DefaultMinSlots),
			MaxSlots:      orDefault(b.MaxSlots, DefaultMaxSlots),
			ServerOptions: strings.TrimSpace(b.ServerOptions),
			RemovalGrace:  orDefault(b.RemovalGrace, 0),
			Growth:        orDefault(b.Growth, GrowthDynamic),
			ShrinkAfter:   orDefault(b.ShrinkAfter, DefaultShrinkAfter),
			EmptyGuard:    orDefault(b.EmptyGuard, true),
		})
	}
	return c
}

// pick returns the file's value if set and non-empty, else the
// environment's if non-empty, else the default. An empty value in the file
// means "the default", as the example config (`token: ""`) has it.
func pick(v *string, env, def string) string {
	switch {
	case v != nil && *v != "":
		return *v
	case env != "":
		return env
	}
	return def
}

func orDefault[T any](v *T, def T) T {
	if v != nil {
		return *v
	}
	return def
}

var (
	yamlUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.file(\w*)$`)
	yamlSections     = map[string]string{"": "the top level", "Consul": "consul", "HAProxy": "haproxy", "API": "api", "Backend": "a backend"}
)

// yamlError rewrites yaml.v3's messages in the config's own terms.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := yamlUnknownField.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("line %s: unknown key %q in %s", m[1], m[2], yamlSections[m[3]])
		} else {
			e = strings.ReplaceAll(e, "time.Duration", "duration (like 10s or 5m)")
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "\n"))
}
