package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

type globalFlags struct {
	logFormat string
	logLevel  string
	log       zerolog.Logger // built from the flags before any subcommand runs
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "hapctl",
		Short: "Keep HAProxy backends in sync with Consul, without reloads",
		Long: `hapctl runs beside HAProxy and keeps the server slots of its backends pointing
at the passing instances of Consul services, through HAProxy's runtime API.

Shell completion, including the backend and server names of the running
hapctl (--addr or HAPCTL_ADDR) for status, drain, maint and undrain:
  source <(hapctl completion bash)       # or: hapctl completion zsh|fish`,
		Example: `  hapctl daemon --config /etc/hapctl/hapctl.yaml
  hapctl status be_web
  hapctl drain be_web srv3 --reason "deploy 42"`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Global flags are checked first: a bad one is a usage error
		// whatever else is wrong.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			log, err := g.logger(stderr)
			g.log = log
			return err
		},
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newDaemonCmd(g), newStatusCmd(), newDrainCmd(), newUndrainCmd(), newMaintCmd(), newPlanCmd(), newValidateCmd(), newVersionCmd())
	// Unknown subcommands and wrong argument counts are usage errors too.
	root.Args = usageArgs(cobra.NoArgs)
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		return usageError{fmt.Errorf("missing command; see hapctl --help")}
	}
	return root
}

// usageArgs marks argument errors as usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%w; usage: %s", err, cmd.UseLine())}
		}
		return nil
	}
}

func (g *globalFlags) logger(w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(g.logLevel))
	if err != nil || g.logLevel == "" {
		return zerolog.Nop(), usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
	}
	switch g.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), usageError{fmt.Errorf("--log-format %q: want json or console", g.logFormat)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a terminal: colours for a person, none
// in a log file or /dev/null.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// requireConfig marks --config as required with a usage error.
func requireConfig(path string) error {
	if path == "" {
		return usageError{fmt.Errorf("--config FILE is required")}
	}
	return nil
}

var stderr io.Writer = os.Stderr
