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

func newDaemonCmd(g *globalFlags) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Run the sync loop and the admin API until SIGINT or SIGTERM",
		Example: `  hapctl daemon --config /etc/hapctl/hapctl.yaml
  hapctl daemon --config hapctl.yaml --log-format console --log-level debug`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfig(cfgPath); err != nil {
				return err
			}
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info().Str("version", versionString()).Str("config", cfgPath).Msg("starting")
			return app.RunDaemon(ctx, cfg, log)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "hapctl config file (YAML)")
	return cmd
}

func newPlanCmd(g *globalFlags) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "plan --config FILE",
		Short: "Print what the next sync would change; change nothing",
		Long: `plan reads Consul and HAProxy once and prints the runtime commands the next sync
would send, and whether HAProxy would be reloaded. It changes nothing.`,
		Example: `  hapctl plan --config /etc/hapctl/hapctl.yaml`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfig(cfgPath); err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			report, err := app.MakePlan(ctx, cfg)
			if err != nil {
				return err
			}
			report.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "hapctl config file (YAML)")
	return cmd
}

func newValidateCmd(g *globalFlags) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check the config file and the HAProxy config it would produce",
		Long: `validate checks hapctl's config and runs haproxy -c on the HAProxy config hapctl
would write (the user's file with the slot lines added). It exits non-zero
with a message naming each problem.`,
		Example: `  hapctl validate --config /etc/hapctl/hapctl.yaml`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireConfig(cfgPath); err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			return app.Validate(ctx, cfg, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "hapctl config file (YAML)")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  usageArgs(cobra.NoArgs),
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
