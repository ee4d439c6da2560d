#!/usr/bin/env bash
# demo.sh — run hapctl on loopback: a Consul dev agent, HAProxy (master-worker)
# with the example config, three sample backends registered in Consul, and
# hapctl keeping HAProxy in sync. Ctrl-C stops exactly what it started.
#
#   scripts/demo.sh                  start the demo and follow hapctl's log
#   scripts/demo.sh add NAME PORT    start one more sample instance (e.g. web-4 9004)
#   scripts/demo.sh remove NAME      stop one sample instance (it deregisters)
#   scripts/demo.sh stop             stop a demo running elsewhere (same as Ctrl-C in its terminal)
#   scripts/demo.sh --smoke          start, check traffic and changes, stop (for CI)
#
# Ports (override with env): FRONTEND_PORT=8080 API_PORT=9680 CONSUL_PORT=18500
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${HAPCTL_DEMO_DIR:-$REPO/.demo}
RUN=$DEMO_DIR/run
BIN=$DEMO_DIR/bin
FRONTEND_PORT=${FRONTEND_PORT:-8080}
API_PORT=${API_PORT:-9680}
CONSUL_PORT=${CONSUL_PORT:-18500}
CONSUL_DNS=$((CONSUL_PORT + 100)) CONSUL_SERVER=$((CONSUL_PORT + 1)) CONSUL_LAN=$((CONSUL_PORT + 2)) CONSUL_WAN=$((CONSUL_PORT + 3))

if [ -t 2 ]; then
	say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
else
	say() { printf 'demo: %s\n' "$*" >&2; }
fi
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND until it succeeds.
wait_for() {
	local what=$1 secs=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "$what: not ready after ${secs}s (logs in $DEMO_DIR)"
		sleep 0.1
	done
}

# start NAME LOGFILE COMMAND...: run COMMAND in the background, remember its pid.
start() {
	local name=$1 logf=$2
	shift 2
	"$@" >"$logf" 2>&1 &
	echo $! >"$RUN/$name.pid"
}

stop_all() {
	local f pid
	[ -d "$RUN" ] || return 0
	# Sample backends first (they deregister), then hapctl, HAProxy, Consul.
	for f in "$RUN"/tail.pid "$RUN"/sample-*.pid "$RUN"/hapctl.pid "$RUN"/haproxy.pid "$RUN"/consul.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	done
}

# running NAME: the process of $RUN/NAME.pid is alive.
running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# demo_pid prints the pid of a running demo.sh. A stale pid file (after a
# reboot) may name another process by now: its command line must say so.
demo_pid() {
	local pid
	pid=$(cat "$RUN/demo.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && grep -q demo.sh "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

add_instance() {
	local name=$1 port=$2
	[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "instance name $name: letters, digits, _ . - only"
	[[ $port =~ ^[0-9]+$ ]] || die "port $port is not a number"
	running consul || die "the demo is not running (start it with scripts/demo.sh)"
	if running "sample-$name"; then
		die "$name is already running: pick another name, or scripts/demo.sh remove $name first"
	fi
	port_busy "$port" && die "port $port is in use"
	start "sample-$name" "$DEMO_DIR/sample-$name.log" "$BIN/sample-backend" --name "$name" \
		--listen "127.0.0.1:$port" --consul "127.0.0.1:$CONSUL_PORT"
	say "started $name on 127.0.0.1:$port (registered in Consul as service web)"
}

remove_instance() {
	local f="$RUN/sample-$1.pid"
	[ -f "$f" ] || die "no running sample instance $1"
	kill -TERM "$(cat "$f")" 2>/dev/null || true
	rm -f "$f"
	say "stopped $1 (it deregistered from Consul)"
}

case "${1:-}" in
add) [ $# -eq 3 ] || die "usage: scripts/demo.sh add NAME PORT"; add_instance "$2" "$3"; exit 0 ;;
remove) [ $# -eq 2 ] || die "usage: scripts/demo.sh remove NAME"; remove_instance "$2"; exit 0 ;;
stop)
	pid=$(demo_pid) || die "no demo is running"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { say "demo stopped"; exit 0; }; sleep 0.1; done
	die "the demo (pid $pid) did not stop within 10 s"
	;;
-h | --help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
"" | --smoke) ;;
*) die "unknown argument $1 (see the top of scripts/demo.sh)" ;;
esac
SMOKE=${1:-}

if running consul || demo_pid >/dev/null; then
	die "a demo is already running (pid files in $RUN): stop it with Ctrl-C in its terminal or scripts/demo.sh stop"
fi
for p in "$FRONTEND_PORT" "$API_PORT" "$CONSUL_PORT" "$CONSUL_DNS" "$CONSUL_SERVER" "$CONSUL_LAN" "$CONSUL_WAN"; do
	port_busy "$p" && die "port $p is in use: set FRONTEND_PORT, API_PORT or CONSUL_PORT (Consul also takes the next 3 and +100), or stop what uses it"
done
for p in 9001 9002 9003; do
	port_busy "$p" && die "port $p is in use: the sample backends web-1..web-3 listen on 9001-9003; stop what uses it"
done

CONSUL_BIN=$("$REPO/scripts/setup.sh" | tail -n1)
command -v go >/dev/null || die "go is needed to build hapctl"
mkdir -p "$RUN" "$BIN"
rm -f "$RUN"/*.pid
echo $$ >"$RUN/demo.pid"
trap 'stop_all; rm -f "$RUN/demo.pid"; say "stopped everything the demo started"' EXIT
trap 'exit 130' INT TERM

say "building hapctl and the sample backend"
(cd "$REPO" && go build -ldflags "-X main.version=demo -X main.commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	-o "$BIN/hapctl" ./cmd/hapctl && go build -o "$BIN/sample-backend" ./cmd/sample-backend)

say "starting consul (dev agent, HTTP 127.0.0.1:$CONSUL_PORT)"
start consul "$DEMO_DIR/consul.log" "$CONSUL_BIN" agent -dev -node demo -bind 127.0.0.1 -client 127.0.0.1 \
	-advertise 127.0.0.1 -http-port "$CONSUL_PORT" -dns-port "$CONSUL_DNS" -server-port "$CONSUL_SERVER" \
	-serf-lan-port "$CONSUL_LAN" -serf-wan-port "$CONSUL_WAN" -grpc-port -1 -grpc-tls-port -1 -log-level warn
wait_for "consul" 30 bash -c "curl -sf http://127.0.0.1:$CONSUL_PORT/v1/status/leader | grep -q :"

say "starting haproxy (frontend http://127.0.0.1:$FRONTEND_PORT/)"
sed -e "s#/run/haproxy/#$RUN/#g" -e "s#/var/lib/haproxy/#$RUN/#g" \
	-e "s#^    bind :80\$#    bind 127.0.0.1:$FRONTEND_PORT#" "$REPO/haproxy/haproxy.cfg" >"$DEMO_DIR/haproxy.cfg"
start haproxy "$DEMO_DIR/haproxy.log" haproxy -W -S "$RUN/master.sock" -f "$DEMO_DIR/haproxy.cfg"
wait_for "haproxy" 10 test -S "$RUN/admin.sock"

cat >"$DEMO_DIR/hapctl.yaml" <<YAML
consul:
  address: 127.0.0.1:$CONSUL_PORT
haproxy:
  config_file: $DEMO_DIR/haproxy.cfg
  runtime_socket: $RUN/admin.sock
  master_socket: $RUN/master.sock
  state_file: $RUN/server-state
api:
  listen: 127.0.0.1:$API_PORT
backends:
  - name: be_web
    service: web
    min_slots: 8
    server_options: "check inter 2s"
YAML
say "starting hapctl (admin API http://127.0.0.1:$API_PORT/)"
"$BIN/hapctl" validate --config "$DEMO_DIR/hapctl.yaml" >&2
start hapctl "$DEMO_DIR/hapctl.log" "$BIN/hapctl" daemon --config "$DEMO_DIR/hapctl.yaml" --log-format console
wait_for "hapctl" 20 curl -sf "http://127.0.0.1:$API_PORT/healthz"

for i in 1 2 3; do add_instance "web-$i" "900$i"; done
seen() { curl -s "http://127.0.0.1:$FRONTEND_PORT/" | cut -d' ' -f3; }
all_three() {
	local got=" "
	for _ in $(seq 30); do got+="$(seen) "; done
	[[ $got == *" web-1 "* && $got == *" web-2 "* && $got == *" web-3 "* ]]
}
wait_for "traffic through HAProxy to all three instances" 30 all_three
wait_for "hapctl ready" 20 curl -sf "http://127.0.0.1:$API_PORT/readyz"

if [ "$SMOKE" = --smoke ]; then
	reloads() { echo "show proc" | socat - "UNIX-CONNECT:$RUN/master.sock" | awk '$2=="master"{print $3}'; }
	r0=$(reloads)
	add_instance web-4 9004
	wait_for "web-4 serving" 30 bash -c "for i in \$(seq 40); do curl -s http://127.0.0.1:$FRONTEND_PORT/; done | grep -q web-4"
	remove_instance web-2
	wait_for "web-2 out" 30 bash -c "echo 'show servers state be_web' | socat - UNIX-CONNECT:$RUN/admin.sock | awk '\$19==9002 && \$7%2==1' | grep -q ."
	[ "$(reloads)" = "$r0" ] || die "haproxy reloaded while instances came and went"
	# Outputs are captured before grep looks at them: under pipefail,
	# `cmd | grep -q` fails whenever grep exits before cmd finished writing
	# (SIGPIPE), which made these checks flaky.
	plan=$("$BIN/hapctl" plan --config "$DEMO_DIR/hapctl.yaml") || die "hapctl plan failed"
	grep -q "no runtime changes" <<<"$plan" || die "plan is not empty after the sync:
$plan"
	page=$(curl -sf "http://127.0.0.1:$API_PORT/") || die "the status page is not served at http://127.0.0.1:$API_PORT/"
	grep -q '<title>hapctl</title>' <<<"$page" || die "http://127.0.0.1:$API_PORT/ is not the status page"
	export HAPCTL_ADDR="http://127.0.0.1:$API_PORT"
	"$BIN/hapctl" drain be_web web-3 --reason smoke >&2 || die "hapctl drain failed"
	# The drain answered 200 once HAProxy had it: status shows it at once.
	status=$("$BIN/hapctl" status be_web) || die "hapctl status failed"
	grep -q 'drain by .*"smoke"' <<<"$status" || die "hapctl status does not show the drain; it says:
$status"
	"$BIN/hapctl" undrain be_web web-3 >&2 || die "hapctl undrain failed"
	[ "$(reloads)" = "$r0" ] || die "haproxy reloaded for a drain"
	# Tab completion as bash runs it, with Debian's bash-completion.
	comp=$(PATH="$BIN:$PATH" bash -c 'source /usr/share/bash-completion/bash_completion
		source <(hapctl completion bash)
		COMP_WORDS=(hapctl drain be_web ""); COMP_CWORD=3; COMP_LINE="hapctl drain be_web "; COMP_POINT=${#COMP_LINE}
		__start_hapctl 2>/dev/null; echo "${COMPREPLY[*]}"')
	grep -qw web-3 <<<"$comp" || die "bash completion of 'hapctl drain be_web <Tab>' offers: $comp"
	say "smoke test passed: traffic reached every instance, changes and a drain applied without reload"
	exit 0
fi

cat >&2 <<MSG

  hapctl demo is running. Try, in another terminal (from $REPO):

    export PATH=$BIN:\$PATH HAPCTL_ADDR=http://127.0.0.1:$API_PORT
    curl http://127.0.0.1:$FRONTEND_PORT/                # answered by web-1, web-2, web-3 in turn
    hapctl status                              # slots, instances, states, drains
    hapctl drain be_web web-2 --reason "try it"  # no new requests to web-2; kept in Consul KV
    hapctl undrain be_web web-2
    hapctl plan --config $DEMO_DIR/hapctl.yaml
    scripts/demo.sh add web-4 9004             # a new instance: placed in a free slot, no reload
    scripts/demo.sh remove web-1               # its slot goes to maint, no reload
    echo "show proc" | socat - UNIX-CONNECT:$RUN/master.sock   # reloads: 0, and it stays 0
    curl http://127.0.0.1:$API_PORT/readyz; curl -s http://127.0.0.1:$API_PORT/metrics | grep ^hapctl_
    source <(hapctl completion bash)           # Tab completes commands, backends and servers

  Status page: open http://127.0.0.1:$API_PORT/ in a browser (no token needed on loopback).
  Logs: $DEMO_DIR/*.log. Following hapctl's log; Ctrl-C (or scripts/demo.sh stop) stops everything.

MSG
# --pid: tail ends with this script, however it ends.
tail --pid=$$ -n +1 -f "$DEMO_DIR/hapctl.log" &
echo $! >"$RUN/tail.pid"
wait $!
