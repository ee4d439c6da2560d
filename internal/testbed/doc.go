// Package testbed starts the real components hapctl works with — HAProxy in
// master-worker mode and a Consul dev agent — on loopback with free ports, for
// integration tests, end-to-end tests and benchmarks. Every process runs in its
// own process group and is stopped, with its children, by the test's cleanup.
//
// Binaries are found through HAPCTL_HAPROXY_BIN / HAPCTL_CONSUL_BIN, then PATH,
// then the cache scripts/setup.sh builds Consul into. A missing binary fails the
// test with a message pointing at scripts/setup.sh: it never skips.
package testbed

// TB is the part of testing.TB the testbed uses. Tests pass their *testing.T
// or *testing.B; the bench command (bench/) passes its own, so that it runs
// the very components the tests run, outside `go test`.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}
