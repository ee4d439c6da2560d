// Package testbed starts the real components hapctl works with — HAProxy in
// master-worker mode and a Consul dev agent — on loopback with free ports, for
// integration tests, end-to-end tests and benchmarks. Every process runs in its
// own process group and is stopped, with its children, by the test's cleanup.
//
// Binaries are found through HAPCTL_HAPROXY_BIN / HAPCTL_CONSUL_BIN, then PATH,
// then the cache scripts/setup.sh builds Consul into. A missing binary fails the
// test with a message pointing at scripts/setup.sh: it never skips.
package testbed
