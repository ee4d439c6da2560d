package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hapctl/hapctl/internal/app"
	"github.com/hapctl/hapctl/internal/config"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = ""
	commit  = ""
)

// configCmd builds a subcommand that takes --config FILE, loads and
// validates it, and hands it to run.
func configCmd(use, short, long, example string, run func(cmd *cobra.Command, cfgPath string, cfg *config.Config) error) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfig(cfgPath); err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			return run(cmd, cfgPath, cfg)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "hapctl config file (YAML)")
	return cmd
}

func newDaemonCmd(g *globalFlags) *cobra.Command {
	return configCmd("daemon --config FILE", "Run the sync loop and the admin API until SIGINT or SIGTERM", "",
		`  hapctl daemon --config /etc/hapctl/hapctl.yaml
  hapctl daemon --config hapctl.yaml --log-format console --log-level debug`,
		func(cmd *cobra.Command, cfgPath string, cfg *config.Config) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g.log.Info().Str("version", versionString()).Str("config", cfgPath).Msg("starting")
			return app.RunDaemon(ctx, cfg, g.log)
		})
}

func newPlanCmd() *cobra.Command {
	return configCmd("plan --config FILE", "Print what the next sync would change; change nothing",
		`plan reads Consul and HAProxy once and prints the runtime commands the next sync
would send, and whether HAProxy would be reloaded. It changes nothing.`,
		`  hapctl plan --config /etc/hapctl/hapctl.yaml`,
		func(cmd *cobra.Command, _ string, cfg *config.Config) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			report, err := app.MakePlan(ctx, cfg)
			if err != nil {
				return err
			}
			report.Print(cmd.OutOrStdout())
			return nil
		})
}

func newValidateCmd() *cobra.Command {
	return configCmd("validate --config FILE", "Check the config file and the HAProxy config it would produce",
		`validate checks hapctl's config and runs haproxy -c on the HAProxy config hapctl
would write (the user's file with the slot lines added). It exits non-zero
with a message naming each problem.`,
		`  hapctl validate --config /etc/hapctl/hapctl.yaml`,
		func(cmd *cobra.Command, _ string, cfg *config.Config) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			return app.Validate(ctx, cfg, cmd.OutOrStdout())
		})
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print version, commit and Go version",
		Example: "  hapctl version",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "hapctl "+versionString())
			return nil
		},
	}
}

func versionString() string {
	v, c := version, commit
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s)", v, c, goVersion)
}
