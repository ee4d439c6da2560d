#!/usr/bin/env bash
# bench.sh — hapctl side by side with consul-template and HAProxy's DNS SRV
# discovery, and hapctl alone at scale (500 services, 20k instances), on
# loopback against real Consul and HAProxy. Installs what it needs first
# (scripts/setup.sh --bench: HAProxy, socat, Consul, consul-template).
#
#   scripts/bench.sh            # the full run, about 8 minutes
#   scripts/bench.sh --quick    # fewer trials and shorter phases, under 2 minutes
#
# Prints Markdown tables (also written to .bench/compare.md) and writes the
# propagation chart to docs/bench-propagation.png. Other flags: go run ./bench -h.
# The per-feature Go benchmarks (growth, fleet drain, recovery, …) are
# scripts/gobench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
setup=$(scripts/setup.sh --bench)
HAPCTL_CONSUL_BIN=$(tail -n1 <<<"$setup")
ct=$(sed -n 's/^consul-template=//p' <<<"$setup")
[ -n "$ct" ] || { echo "bench.sh: scripts/setup.sh --bench printed no consul-template path" >&2; exit 1; }
export HAPCTL_CONSUL_BIN
exec go run ./bench --consul-template "$ct" "$@"
