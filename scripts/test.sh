#!/usr/bin/env bash
# test.sh — set up the test bed and run hapctl's whole test suite:
# formatting, vet, unit tests, fuzz seed corpora, end-to-end tests against
# real Consul and HAProxy (all with the race detector), the demo's smoke run
# one pass of every Go benchmark and a quick run of the bench command
# (scripts/bench.sh --quick: hapctl side by side with consul-template and
# HAProxy's DNS SRV discovery, and at scale). Fails loudly on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup (HAProxy, socat, Consul; docker-compose, systemd-analyze and chromium for the checks)"
HAPCTL_CONSUL_BIN=$(scripts/setup.sh --test | tail -n1)
export HAPCTL_CONSUL_BIN
command -v go >/dev/null || { echo "go is not on PATH" >&2; exit 1; }
go version >&2

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.demo/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "go test -race (unit, fuzz seed corpora, end-to-end)"
go test -race -count=1 -timeout 30m ./...

step "deployment files (no Docker engine here: the compose file is checked, not run)"
HAPCTL_TOKEN=ci-check docker-compose -f docker-compose.yml config -q
# Without a token the file refuses to start: the API listens on 0.0.0.0.
if out=$(env -u HAPCTL_TOKEN docker-compose -f docker-compose.yml config -q 2>&1); then
	echo "docker-compose.yml starts without HAPCTL_TOKEN" >&2
	exit 1
fi
grep -q "set HAPCTL_TOKEN" <<<"$out" || { echo "docker-compose.yml without HAPCTL_TOKEN: $out" >&2; exit 1; }
unitdir=$(mktemp -d)
go build -o "$unitdir/hapctl" ./cmd/hapctl
# verify wants ExecStart's binary to exist: point it at the one just built.
sed "s|/usr/local/bin/hapctl|$unitdir/hapctl|" deploy/hapctl.service >"$unitdir/hapctl.service"
systemd-analyze verify "$unitdir/hapctl.service"
rm -rf "$unitdir"

step "demo smoke run"
scripts/demo.sh --smoke

step "benchmarks, one pass each (numbers: scripts/gobench.sh)"
go test -count=1 -run '^$' -bench . -benchtime 1x -timeout 10m ./...

step "bench command, quick run (numbers: scripts/bench.sh)"
benchout=$(mktemp -d)
trap 'rm -rf "$benchout"' EXIT
scripts/bench.sh --quick --chart "$benchout/propagation.png" --out "$benchout/compare.md" >/dev/null
test -s "$benchout/propagation.png" && grep -q '^| hapctl |' "$benchout/compare.md" ||
	{ echo "the bench command left no chart or no tables" >&2; exit 1; }

step "all tests passed"
