// Package app wires hapctl's components into the daemon and the one-shot
// commands (plan, validate).
package app

import (
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/config"
	hconsul "github.com/hapctl/hapctl/internal/consul"
)

// consulClient builds a Consul client from consul/api's defaults — which
// read CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN and the CONSUL_* TLS variables —
// overridden by the config file, and the lean health client on the same
// connection settings that the service watches use.
func consulClient(c config.Consul) (*api.Client, *hconsul.HealthClient, error) {
	cfg := api.DefaultConfig()
	cfg.Address = c.Address
	cfg.Token = c.Token
	cfg.Datacenter = c.Datacenter
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("consul client for %s: %w", c.Address, err)
	}
	health, err := hconsul.NewHealthClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("consul client for %s: %w", c.Address, err)
	}
	return client, health, nil
}

// watchGroup is the backends sharing one (service, tags) query.
type watchGroup struct {
	service  string
	tags     []string
	backends []string
}

func watchGroups(backends []config.Backend) []watchGroup {
	var out []watchGroup
	index := map[string]int{}
	for _, b := range backends {
		key := hconsul.Key(b.Service, b.Tags)
		if i, ok := index[key]; ok {
			out[i].backends = append(out[i].backends, b.Name)
			continue
		}
		index[key] = len(out)
		out = append(out, watchGroup{service: b.Service, tags: b.Tags, backends: []string{b.Name}})
	}
	return out
}

// drainKV is where the operator overrides live in Consul KV.
func drainKV(client *api.Client, c config.Consul) hconsul.DrainKV {
	return hconsul.DrainKV{KV: client.KV(), Prefix: c.KVPrefix, Datacenter: c.Datacenter}
}
