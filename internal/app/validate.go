package app

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/haproxycfg"
)

// Validate checks the HAProxy config hapctl would produce from cfg: the
// file parses, the slot lines can be added, and `haproxy -c` accepts the
// result. It contacts neither Consul nor HAProxy's sockets.
func Validate(ctx context.Context, cfg *config.Config, w io.Writer) error {
	data, err := os.ReadFile(cfg.HAProxy.ConfigFile)
	if err != nil {
		return fmt.Errorf("haproxy.config_file: %w", err)
	}
	if _, err := haproxycfg.Parse(data); err != nil {
		return fmt.Errorf("haproxy.config_file %s: %w", cfg.HAProxy.ConfigFile, err)
	}
	specs := haproxycfg.SpecsFor(cfg.Backends)
	out, changes, err := haproxycfg.EnsureSlots(data, specs)
	if err != nil {
		return err
	}
	if err := haproxycfg.Verify(out, specs); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.HAProxy.Binary); err != nil {
		return fmt.Errorf("haproxy.binary: %w", err)
	}
	if err := haproxycfg.CheckData(ctx, cfg.HAProxy.Binary, cfg.HAProxy.ConfigFile, out); err != nil {
		return fmt.Errorf("the haproxy config hapctl would write: %w", err)
	}
	noun := "backends"
	if len(cfg.Backends) == 1 {
		noun = "backend"
	}
	fmt.Fprintf(w, "config OK: %d %s\n", len(cfg.Backends), noun)
	parsed, _ := haproxycfg.Parse(out)
	names := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		names[i] = b.Name
	}
	for _, warning := range haproxycfg.ConfigWarnings(parsed, cfg.HAProxy.StateFile, names) {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	if len(changes) == 0 {
		fmt.Fprintf(w, "haproxy config %s: has every slot line, haproxy -c accepts it\n", cfg.HAProxy.ConfigFile)
		return nil
	}
	fmt.Fprintf(w, "haproxy config %s: hapctl would add slot lines, and haproxy -c accepts the result:\n", cfg.HAProxy.ConfigFile)
	for _, c := range changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
	return nil
}
