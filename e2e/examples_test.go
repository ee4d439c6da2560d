package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/haproxycfg"
	"github.com/hapctl/hapctl/internal/testbed"
)

// TestExampleConfigs keeps the shipped examples honest: hapctl.yaml and the
// docker-compose one load, and haproxy.cfg with hapctl's slot lines passes
// `haproxy -c`.
func TestExampleConfigs(t *testing.T) {
	t.Setenv("HAPCTL_TOKEN", "compose-token") // docker-compose.yml sets it: the API listens on 0.0.0.0
	if c, err := config.Load("../deploy/hapctl.compose.yaml"); err != nil || c.API.Token != "compose-token" || len(c.Backends) != 1 {
		t.Fatalf("deploy/hapctl.compose.yaml: %v", err)
	}
	cfg, err := config.Load("../haproxy/hapctl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.NewReplacer("/run/haproxy/", dir+"/", "/var/lib/haproxy/", dir+"/").Replace(string(data))
	specs := haproxycfg.SpecsFor(cfg.Backends)
	out, changes, err := haproxycfg.EnsureSlots([]byte(text), specs)
	if err != nil || len(changes) != 1 || len(changes[0].Added) != cfg.Backends[0].MinSlots {
		t.Fatalf("changes %v, err %v", changes, err)
	}
	if err := haproxycfg.Verify(out, specs); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := haproxycfg.CheckData(context.Background(), testbed.HAProxyBin(t), path, out); err != nil {
		t.Fatalf("haproxy -c refuses the example with slots: %v", err)
	}
}
