package testbed

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul is a Consul agent owned by one test, every port on loopback: a dev
// agent (state in memory) or a single server with a data directory.
type Consul struct {
	Addr   string // host:port of the HTTP API
	DNS    string // host:port of the DNS interface (UDP and TCP)
	Client *api.Client
	Proc   *Process
	t      TB
	args   []string
}

// StartConsul starts a dev agent and waits until it has a leader and its node
// is registered.
func StartConsul(t TB) *Consul {
	t.Helper()
	return startConsul(t, "-dev")
}

// StartConsulDev starts a dev agent with extra agent arguments, such as
// `-hcl 'limits { http_max_conns_per_client = 4096 }'`.
func StartConsulDev(t TB, extra ...string) *Consul {
	t.Helper()
	return startConsul(t, append([]string{"-dev"}, extra...)...)
}

// StartConsulServer starts a single server that keeps its state in a data
// directory, so that Stop and Start keep registrations, checks and KV (raft
// timing as in dev mode: a leader in about two seconds).
func StartConsulServer(t TB) *Consul {
	t.Helper()
	return startConsul(t, "-server", "-bootstrap-expect", "1", "-data-dir", t.TempDir(),
		"-hcl", "performance { raft_multiplier = 1 }")
}

// StartConsulACL starts a dev agent with ACLs on and deny by default; its
// Client, and the agent itself, use the management token.
func StartConsulACL(t TB, managementToken string) *Consul {
	t.Helper()
	return startConsulToken(t, managementToken, "-dev", "-hcl", fmt.Sprintf(
		`acl { enabled = true default_policy = "deny" tokens { initial_management = %q agent = %q } }`, managementToken, managementToken))
}

func startConsul(t TB, mode ...string) *Consul {
	t.Helper()
	return startConsulToken(t, "", mode...)
}

func startConsulToken(t TB, token string, mode ...string) *Consul {
	t.Helper()
	http := FreePort(t)
	dns := FreePort(t)
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(http), DNS: "127.0.0.1:" + strconv.Itoa(dns), t: t}
	c.args = append(append([]string{"agent"}, mode...), "-node", "hapctl-test",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", strconv.Itoa(http),
		"-dns-port", strconv.Itoa(dns),
		"-serf-lan-port", strconv.Itoa(FreePort(t)),
		"-serf-wan-port", strconv.Itoa(FreePort(t)),
		"-server-port", strconv.Itoa(FreePort(t)),
		"-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn",
	)
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	cfg.Token = token
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = client
	c.Start()
	return c
}

// Start (re)starts the agent: a dev agent with empty state, a server with
// the state it had.
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

// Stop stops the agent; a dev agent's state is gone with it.
func (c *Consul) Stop() { c.Proc.Stop() }

// Pause freezes the agent (SIGSTOP): connections stay open and nothing
// answers, like a hung agent or a network partition. Resume undoes it.
func (c *Consul) Pause() {
	c.t.Helper()
	if err := c.Proc.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = c.Proc.Signal(syscall.SIGCONT) }) // a stopped process ignores SIGTERM
}

// Resume lets a paused agent run again.
func (c *Consul) Resume() {
	c.t.Helper()
	if err := c.Proc.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
}

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
