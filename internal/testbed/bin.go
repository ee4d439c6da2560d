package testbed

import (
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ConsulVersion is the version scripts/setup.sh builds and caches.
const ConsulVersion = "1.22.3"

// HAProxyBin returns the haproxy binary or fails the test.
func HAProxyBin(t TB) string {
	t.Helper()
	return findBin(t, "HAPCTL_HAPROXY_BIN", "haproxy", "/usr/sbin/haproxy", "scripts/setup.sh")
}

// ConsulBin returns the consul binary or fails the test.
func ConsulBin(t TB) string {
	t.Helper()
	return findBin(t, "HAPCTL_CONSUL_BIN", "consul", consulCachePath(), "scripts/setup.sh, which builds and caches it")
}

func consulCachePath() string {
	return filepath.Join(CacheDir(), "consul-"+ConsulVersion, "consul")
}

// CacheDir is where scripts/setup.sh caches what it builds:
// $HAPCTL_CACHE_DIR, else $XDG_CACHE_HOME/hapctl, else ~/.cache/hapctl.
func CacheDir() string {
	dir := os.Getenv("HAPCTL_CACHE_DIR")
	if dir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(base, "hapctl")
	}
	return dir
}

// findBin returns the binary that env names, else name on PATH, else
// fallback; or fails the test, saying to run setup.
func findBin(t TB, env, name, fallback, setup string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s not found (%s=%s: %v): run %s", name, env, p, err, setup)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	t.Fatalf("%s not found (not on PATH nor at %s): run %s", name, fallback, setup)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// is taken below the kernel's ephemeral range when it can be, so that no
// later listen on port 0 (a test's backends, a process's own sockets) can
// be handed the same port before the caller binds it.
func FreePort(t TB) int {
	t.Helper()
	if lo, hi := portRange(); hi > lo {
		for range 200 {
			p := lo + rand.IntN(hi-lo)
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err == nil {
				_ = l.Close()
				return p
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// portRange is [10000, start of the ephemeral range), or empty when the
// range cannot be read or leaves no room below it.
func portRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 11000 {
		return 0, 0
	}
	return 10000, low
}

// ShortDir makes a directory with a short path, for unix sockets (108-byte
// limit), removed at cleanup.
func ShortDir(t TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// ChromiumBin returns Debian's chromium (scripts/setup.sh --test installs
// it) or fails the test.
func ChromiumBin(t TB) string {
	t.Helper()
	return findBin(t, "HAPCTL_CHROMIUM_BIN", "chromium", "/usr/bin/chromium", "scripts/setup.sh --test")
}
