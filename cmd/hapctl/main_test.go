package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"daemon"},
		{"plan"},
		{"validate"},
		{"daemon", "--config"},
		{"daemon", "--bogus"},
		{"version", "extra"},
		{"validate", "--config", "x.yaml", "extra"},
		{"--log-level", "loud", "daemon", "--config", "x.yaml"},
		{"--log-format", "xml", "daemon", "--config", "x.yaml"},
	} {
		_, err := run(args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("hapctl %s: err = %v, want a usage error (exit 2)", strings.Join(args, " "), err)
		}
	}
}

func TestValidateReportsKeys(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("backends:\n  - name: be_web\n    service: web\n    min_slots: 0\n    growth: fast\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run("validate", "--config", path)
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("err = %v, want an operation failure (exit 1)", err)
	}
	for _, want := range []string{"backends[0] (be_web).min_slots", "backends[0] (be_web).growth"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := run("version")
	if err != nil || !strings.HasPrefix(out, "hapctl ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// Console logs have colours on a terminal only: a log file gets plain text.
func TestConsoleLogsWithoutColoursInAFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	g := &globalFlags{logLevel: "info", logFormat: "console"}
	log, err := g.logger(f)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("backend", "be_web").Msg("hello")
	_ = f.Close()
	got, _ := os.ReadFile(f.Name())
	if strings.Contains(string(got), "\x1b[") || !strings.Contains(string(got), "hello backend=be_web") {
		t.Fatalf("console log in a file: %q", got)
	}
}

// A wrong number of arguments says how the command is used.
func TestUsageErrorShowsUsage(t *testing.T) {
	t.Parallel()
	_, err := run("drain", "be_web")
	if err == nil || !strings.Contains(err.Error(), "usage: hapctl drain BACKEND SERVER") {
		t.Fatalf("drain with one argument: %v", err)
	}
}
