package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

// readmePolicy is the Consul ACL policy the README gives for hapctl.
const readmePolicy = `service_prefix "" { policy = "read" }
node_prefix    "" { policy = "read" }
key_prefix "hapctl/drains/" { policy = "write" }`

// TestConsulACLPolicy runs hapctl against an agent with ACLs on and deny by
// default: with a token of the README's policy it syncs and drains; without
// write access a drain is refused with a 503 and nothing changes; without
// the key rule, or the node rule, it says on /readyz what it cannot read,
// and changes nothing.
func TestConsulACLPolicy(t *testing.T) {
	c := testbed.StartConsulACL(t, "root-token")
	token := func(name, rules string) string {
		t.Helper()
		p, _, err := c.Client.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := c.Client.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok.SecretID
	}

	b := newBed(t, bedOptions{minSlots: 4, consul: c, consulToken: token("hapctl", readmePolicy)})
	var backends []*backend
	for i := 1; i <= 2; i++ {
		be := startBackend(t, fmt.Sprintf("web-%d", i))
		b.register(be.name, be, 1)
		backends = append(backends, be)
	}
	b.startHapctl()
	for _, be := range backends {
		b.waitSlot(be.endpoint(), runtime.StateReady, 1)
	}
	if code := post(t, b, "", "/v1/backends/be_web/servers/web-1/drain", `{"reason":"acl"}`, nil); code != 200 {
		t.Fatalf("drain with the README's policy: %d", code)
	}
	b.waitSlot(backends[0].endpoint(), runtime.StateDrain, -1)
	if code := post(t, b, "", "/v1/backends/be_web/servers/web-1/undrain", "", nil); code != 200 {
		t.Fatalf("undrain with the README's policy: %d", code)
	}
	b.waitSlot(backends[0].endpoint(), runtime.StateReady, -1)
	want := b.slots()
	b.stopHapctl()

	// Read-only drains: hapctl runs, a drain is refused and changes nothing.
	b.setConsulToken(token("hapctl-read-kv", strings.Replace(readmePolicy, `policy = "write"`, `policy = "read"`, 1)))
	b.startHapctl()
	var e struct{ Error string }
	if code := post(t, b, "", "/v1/backends/be_web/servers/web-2/drain", `{"reason":"acl"}`, &e); code != 503 || !strings.Contains(e.Error, "Permission denied") {
		t.Fatalf("drain without key write: %d %q", code, e.Error)
	}
	b.holdFor(500*time.Millisecond, want)
	b.stopHapctl()

	// No key rule, and a drain set through another node: Consul answers the
	// list with the key left out; hapctl must not take that for "no
	// drains", and says so on /readyz.
	if _, err := c.Client.KV().Put(&api.KVPair{Key: "hapctl/drains/be_web/web-2", Value: []byte(`{"state":"drain","reason":"elsewhere"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	b.setConsulToken(token("hapctl-no-kv", readmePolicy[:strings.Index(readmePolicy, "key_prefix")]))
	b.hapctl = testbed.StartProcess(t, "hapctl", hapctlBin, "daemon", "--config", b.cfgPath)
	b.readyzSays("consul left out keys under hapctl/drains/ that the consul token may not read", 20*time.Second)
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("haproxy changed without the drains: %v, was %v", got, want)
	}
	b.stopHapctl()

	// No node rule: Consul leaves every instance out of the health answer;
	// hapctl must not take that for "no instances".
	b.setConsulToken(token("hapctl-no-node", strings.Replace(readmePolicy, `node_prefix    "" { policy = "read" }`, "", 1)))
	b.hapctl = testbed.StartProcess(t, "hapctl", hapctlBin, "daemon", "--config", b.cfgPath)
	b.readyzSays("consul left out instances of web that the consul token may not read", 20*time.Second)
	if got := b.slots(); !slices.Equal(got, want) {
		t.Fatalf("haproxy changed without the instances: %v, was %v", got, want)
	}
}

// setConsulToken rewrites consul.token in the bed's hapctl config.
func (b *bed) setConsulToken(token string) {
	b.t.Helper()
	cfg := fileContent(b.t, b.cfgPath)
	start := strings.Index(cfg, "  token: ")
	end := start + strings.Index(cfg[start:], "\n")
	testbed.WriteFile(b.t, b.cfgPath, cfg[:start]+"  token: "+token+cfg[end:])
}
