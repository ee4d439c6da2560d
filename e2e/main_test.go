// Package e2e runs hapctl end to end against a real Consul dev agent, a
// real HAProxy in master-worker mode and small Go HTTP backends, all on
// loopback with free ports.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// hapctlBin is the hapctl binary built for this test run.
var hapctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hapctl-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hapctlBin = filepath.Join(dir, "hapctl")
	args := []string{"build", "-o", hapctlBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../cmd/hapctl")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hapctl:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
