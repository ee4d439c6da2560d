#!/usr/bin/env bash
# setup.sh — install what hapctl's demo and tests need on a Debian machine.
#
#   HAProxy, socat, curl, bash-completion   from apt (skipped when installed)
#   Consul $CONSUL_VERSION   built from the Go module proxy, cached outside the repo
#   docker-compose, systemd-analyze, chromium   only with --test, from apt: the test
#                            suite checks docker-compose.yml and deploy/hapctl.service
#                            and drives the status page in headless Chromium
#   consul-template $CT_VERSION   only with --bench (the benchmark compares against it):
#                            go install from the Go module proxy, cached likewise
#
# Idempotent: a second run takes about a second. Prints the Consul binary's path
# on the last line of stdout so callers can do: CONSUL_BIN=$(scripts/setup.sh | tail -n1)
# With --bench, the line before it is consul-template=/path/to/consul-template.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-1.22.3}"
CT_VERSION="${CT_VERSION:-0.41.1}"
CACHE_DIR="${HAPCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hapctl}"
CONSUL_BIN="$CACHE_DIR/consul-$CONSUL_VERSION/consul"
CT_BIN="$CACHE_DIR/consul-template-$CT_VERSION/consul-template"

bench=false
test_tools=false
for arg in "$@"; do
	case $arg in
	--bench) bench=true ;;
	--test) test_tools=true ;;
	*) printf 'usage: %s [--bench] [--test]\n' "$0" >&2; exit 2 ;;
	esac
done

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

need_cmd() { command -v "$1" >/dev/null 2>&1; }

install_apt_packages() {
	local missing=()
	need_cmd haproxy || missing+=(haproxy)
	need_cmd socat || missing+=(socat)
	need_cmd curl || missing+=(curl)
	# bash-completion: `source <(hapctl completion bash)` needs its helpers.
	[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
	if $test_tools; then
		need_cmd docker-compose || missing+=(docker-compose)
		need_cmd systemd-analyze || missing+=(systemd)
		need_cmd chromium || missing+=(chromium)
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		log "haproxy, socat, curl and bash-completion present ($(haproxy -v 2>/dev/null | head -n1))"
		return
	fi
	need_cmd apt-get || die "missing ${missing[*]} and no apt-get: install them by hand (Debian: apt-get install -y ${missing[*]})"
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		need_cmd sudo || die "missing ${missing[*]}: run as root or install sudo"
		sudo="sudo"
	fi
	log "installing ${missing[*]} from apt"
	local aptlog
	aptlog=$(mktemp)
	if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"; } >"$aptlog" 2>&1; then
		cat "$aptlog" >&2
		rm -f "$aptlog"
		die "apt-get install ${missing[*]} failed (output above)"
	fi
	rm -f "$aptlog"
	# The package starts a system haproxy on :80 with its own config; we run our own instances.
	if need_cmd systemctl && systemctl is-active --quiet haproxy 2>/dev/null; then
		$sudo systemctl stop haproxy >/dev/null 2>&1 || true
	fi
	local c
	for c in haproxy socat curl; do
		need_cmd "$c" || die "$c still missing after apt-get install"
	done
	[ -f /usr/share/bash-completion/bash_completion ] || die "bash-completion still missing after apt-get install"
	if $test_tools; then
		for c in docker-compose systemd-analyze chromium; do
			need_cmd "$c" || die "$c still missing after apt-get install"
		done
	fi
}

# consul_ok: the cached binary runs and is the wanted version. (Not a pipe
# into grep -q: under pipefail, consul's SIGPIPE would fail the check.)
consul_ok() {
	local out
	[ -x "$CONSUL_BIN" ] && out=$("$CONSUL_BIN" version 2>/dev/null) && [[ $out == *"v$CONSUL_VERSION"* ]]
}

build_consul() {
	if consul_ok; then
		log "consul v$CONSUL_VERSION cached at $CONSUL_BIN"
		return
	fi
	need_cmd go || die "go is not on PATH: install Go (https://go.dev/dl) to build Consul"
	log "building consul v$CONSUL_VERSION from the Go module proxy (takes ~8 minutes once; cached in $CACHE_DIR)"
	local src work
	src=$(GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/consul@v$CONSUL_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -n "$src" ] && [ -d "$src" ] || die "go mod download github.com/hashicorp/consul@v$CONSUL_VERSION failed (is GOPROXY reachable?)"
	mkdir -p "$CACHE_DIR"
	work=$(mktemp -d "$CACHE_DIR/consul-build.XXXXXX")
	trap 'rm -rf "$work"' RETURN
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	# The module's go.mod replaces its nested modules with paths the zip does not hold.
	(
		cd "$work"
		for m in github.com/hashicorp/consul/api github.com/hashicorp/consul/sdk \
			github.com/hashicorp/consul/proto-public github.com/hashicorp/consul/envoyextensions \
			github.com/hashicorp/consul/troubleshoot; do
			go mod edit -dropreplace="$m"
		done
		GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o consul . >&2
	) || die "building consul failed (see the output above)"
	mkdir -p "$(dirname "$CONSUL_BIN")"
	mv "$work/consul" "$CONSUL_BIN.tmp"
	mv "$CONSUL_BIN.tmp" "$CONSUL_BIN"
	consul_ok || die "built consul does not report v$CONSUL_VERSION"
	log "consul v$CONSUL_VERSION built: $CONSUL_BIN"
}

# ct_ok: like consul_ok; `consul-template -v` prints "consul-template v0.41.1 ()".
ct_ok() {
	local out
	[ -x "$CT_BIN" ] && out=$("$CT_BIN" -v 2>&1) && [[ $out == *"v$CT_VERSION "* ]]
}

install_consul_template() {
	if ct_ok; then
		log "consul-template v$CT_VERSION cached at $CT_BIN"
		return
	fi
	need_cmd go || die "go is not on PATH: install Go (https://go.dev/dl) to build consul-template"
	log "installing consul-template v$CT_VERSION from the Go module proxy (takes ~40 seconds once; cached in $CACHE_DIR)"
	# With @version, go install ignores the repo's go.mod: consul-template gets its own dependencies.
	GOBIN="$(dirname "$CT_BIN")" go install "github.com/hashicorp/consul-template@v$CT_VERSION" >&2 ||
		die "go install github.com/hashicorp/consul-template@v$CT_VERSION failed (see the output above)"
	ct_ok || die "installed consul-template does not report v$CT_VERSION"
	log "consul-template v$CT_VERSION installed: $CT_BIN"
}

install_apt_packages
build_consul
if $bench; then
	install_consul_template
	echo "consul-template=$CT_BIN"
fi
echo "$CONSUL_BIN"
