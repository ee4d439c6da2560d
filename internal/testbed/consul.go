package testbed

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul is a `consul agent -dev` owned by one test, every port on loopback.
type Consul struct {
	Addr   string // host:port of the HTTP API
	Client *api.Client
	Proc   *Process
	t      testing.TB
	args   []string
}

// StartConsul starts a dev agent and waits until it has a leader and its node
// is registered.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	http := FreePort(t)
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(http), t: t}
	c.args = []string{"agent", "-dev", "-node", "hapctl-test",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", strconv.Itoa(http),
		"-dns-port", strconv.Itoa(FreePort(t)),
		"-serf-lan-port", strconv.Itoa(FreePort(t)),
		"-serf-wan-port", strconv.Itoa(FreePort(t)),
		"-server-port", strconv.Itoa(FreePort(t)),
		"-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn",
	}
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	cfg.Token = ""
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = client
	c.Start()
	return c
}

// Start (re)starts the agent with empty state.
func (c *Consul) Start() {
	c.t.Helper()
	c.Proc = StartProcess(c.t, "consul", ConsulBin(c.t), c.args...)
	Eventually(c.t, 30*time.Second, "consul has a leader and its node", func() error {
		if c.Proc.Exited() {
			c.t.Fatalf("consul exited at start:\n%s", c.Proc.Output())
		}
		leader, err := c.Client.Status().Leader()
		if err != nil || leader == "" {
			return fmt.Errorf("no leader yet (%v)", err)
		}
		nodes, _, err := c.Client.Catalog().Nodes(nil)
		if err != nil || len(nodes) == 0 {
			return fmt.Errorf("node not registered yet (%v)", err)
		}
		return nil
	})
}

// Stop stops the agent; its state is gone (dev mode keeps it in memory).
func (c *Consul) Stop() { c.Proc.Stop() }

// Register registers a service instance with a TTL check in the given status.
func (c *Consul) Register(svc *api.AgentServiceRegistration, status string) {
	c.t.Helper()
	svc.Check = &api.AgentServiceCheck{CheckID: CheckID(svc.ID), TTL: "10m", Status: status}
	if err := c.Client.Agent().ServiceRegister(svc); err != nil {
		c.t.Fatalf("register %s: %v", svc.ID, err)
	}
}

// SetCheck sets the TTL check of a registered instance to passing, warning or critical.
func (c *Consul) SetCheck(id, status string) {
	c.t.Helper()
	if err := c.Client.Agent().UpdateTTL(CheckID(id), "set by test", status); err != nil {
		c.t.Fatalf("update check of %s: %v", id, err)
	}
}

// Deregister removes an instance.
func (c *Consul) Deregister(id string) {
	c.t.Helper()
	if err := c.Client.Agent().ServiceDeregister(id); err != nil {
		c.t.Fatalf("deregister %s: %v", id, err)
	}
}

// CheckID is the TTL check id Register gives an instance.
func CheckID(serviceID string) string { return "ttl-" + serviceID }
