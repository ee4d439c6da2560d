#!/usr/bin/env bash
# gobench.sh — run hapctl's Go benchmarks (go test -bench) with enough iterations to quote, and
# print the results. BENCHMARKS.md's per-feature sections come from this command;
# the side-by-side comparison and the scale run come from scripts/bench.sh.
#
#   propagation  Consul change sent -> HAProxy shows it (60 trials each), against
#                real Consul and HAProxy, with Consul's own share measured alongside
#   growth       1 -> 1000 instances under keep-alive load, reload and dynamic mode:
#                reloads, failed requests, time until all serve
#   new slot     an instance that needs a new slot -> serving (20 trials per mode)
#   fleet drain  drain/undrain call -> applied on every node of 3 HAProxy + hapctl
#                pairs on one Consul (200 trials)
#   recovery     HAProxy restarted / reloaded by hand -> every slot restored, and a
#                hung Consul agent resumed -> /readyz ready (10 trials each)
#   flap         one instance's check flipping 10x/s (100 flips): runtime commands
#                and hapctl CPU per flip
#   apply        1000 slot changes through the executor into a real HAProxy
#   plan         desired state + plan for 1k/10k/50k slots (pure, allocations)
set -euo pipefail
cd "$(dirname "$0")/.."
HAPCTL_CONSUL_BIN=$(scripts/setup.sh | tail -n1)
export HAPCTL_CONSUL_BIN
mkdir -p .bench
out=.bench/gobench.txt
{
	echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, $(go version | cut -d' ' -f3), $(haproxy -v | head -n1 | cut -d' ' -f1-3)"
	go test -count=1 -run '^$' -bench 'BenchmarkPropagation' -benchtime 60x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkGrowth' -benchtime 1x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkNewSlotToServing' -benchtime 20x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkFleetDrain' -benchtime 200x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkRecovery' -benchtime 10x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkFlap' -benchtime 100x ./e2e
	go test -count=1 -run '^$' -bench 'BenchmarkApply1000/' -benchtime 50x ./internal/sync
	go test -count=1 -run '^$' -bench 'BenchmarkApply1000Servers' -benchtime 50x ./internal/runtime
	go test -count=1 -run '^$' -bench 'BenchmarkPlan' -benchmem ./internal/sync
} 2>&1 | grep -E '^(#|Benchmark|ok|FAIL|---|\s+(growth_|fleet_|fault_)?bench_test)' | tee "$out"
echo "results in $out" >&2
