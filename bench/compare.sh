#!/usr/bin/env bash
# bench/compare.sh: Parley against Centrifugo v6 on this machine, with the
# same load tool (cmd/parley-load), the same scenarios and sizes, one server
# after the other, REPS repetitions, medians, one table.
#
#   bench/compare.sh                      # issue 8's sizes (tens of minutes)
#   QUICK=1 bench/compare.sh              # smoke check, small sizes (~3 min)
#   SCENARIOS="fanout rooms" REPS=3 bench/compare.sh
#   TARGETS="centrifugo parley-proto" bench/compare.sh
#
# Targets: centrifugo (v6.9.1, memory engine, JSON protocol, history of 100
# per channel), parley-proto and parley-json (-store memory), parley-bolt
# (proto, -store bolt: durable history, an fsync per batch).
# Every server is started fresh on 127.0.0.1 for each run and stopped after
# it; everything this script starts is stopped on exit (trap).
#
# Sizes are environment variables (defaults from issue 8); see below.
# Results (one JSON report per run, plus the server command) stay in OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=${QUICK:-0}
REPS=${REPS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
# REP_START lets an interrupted run be completed in the same OUT.
REP_START=${REP_START:-1}
SCENARIOS=${SCENARIOS:-"idle fanout rooms churn"}
TARGETS=${TARGETS:-"centrifugo parley-proto parley-json parley-bolt"}
CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v6.9.1}
CACHE=${CACHE:-${TMPDIR:-/tmp}/parley-bench-cache}
OUT=${OUT:-$CACHE/results-$(date -u +%Y%m%dT%H%M%SZ)}
PORT_PARLEY=${PORT_PARLEY:-18080}
PORT_CENTRIFUGO=${PORT_CENTRIFUGO:-18000}
# Wait (at most QUIET_WAIT seconds) before each run until the machine's CPUs
# are at least QUIET_IDLE percent idle, so other work on the box skews less.
QUIET_IDLE=${QUIET_IDLE:-85}
QUIET_WAIT=${QUIET_WAIT:-120}

if [ "$QUICK" = 1 ]; then
	: "${IDLE_CONNS:=1000}" "${IDLE_HOLD:=3s}"
	: "${FANOUT_MEMBERS:=200}" "${FANOUT_RATES:=100,200,400}" "${FANOUT_DURATION:=2s}"
	: "${ROOMS_ROOMS:=100}" "${ROOMS_RATES:=500,1000}" "${ROOMS_DURATION:=2s}"
	: "${CHURN_ROOMS:=20}" "${CHURN_DURATION:=3s}"
	QUIET_WAIT=${QUIET_WAIT_QUICK:-5}
fi
# idle: N connections in rooms of IDLE_ROOM_SIZE, held IDLE_HOLD.
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_ROOM_SIZE=${IDLE_ROOM_SIZE:-10}
IDLE_HOLD=${IDLE_HOLD:-10s}
# fanout: one room of FANOUT_MEMBERS, FANOUT_PUBLISHERS of them posting; one
# step per rate in FANOUT_RATES (posts/s), each FANOUT_DURATION long.
FANOUT_MEMBERS=${FANOUT_MEMBERS:-1000}
FANOUT_PUBLISHERS=${FANOUT_PUBLISHERS:-10}
FANOUT_RATES=${FANOUT_RATES:-100,200,300,450,600,750,900,1200,1500,1800,2400,3000,3600,4200,5000,6000,8000}
FANOUT_DURATION=${FANOUT_DURATION:-5s}
# rooms: ROOMS_ROOMS rooms × ROOMS_MEMBERS members, posts spread over rooms.
ROOMS_ROOMS=${ROOMS_ROOMS:-1000}
ROOMS_MEMBERS=${ROOMS_MEMBERS:-10}
ROOMS_RATES=${ROOMS_RATES:-1000,2000,3000,4000,5000,6000,8000,10000,12000,15000,20000}
ROOMS_DURATION=${ROOMS_DURATION:-5s}
# churn: CHURN_ROOMS × CHURN_MEMBERS chatting at CHURN_CHAT posts/s while
# CHURN_RATE connections/s connect, join, post, leave, close.
CHURN_ROOMS=${CHURN_ROOMS:-100}
CHURN_MEMBERS=${CHURN_MEMBERS:-10}
CHURN_CHAT=${CHURN_CHAT:-200}
CHURN_RATE=${CHURN_RATE:-100}
CHURN_DURATION=${CHURN_DURATION:-10s}
# Parley's flags for the load: no per-session rate limit in the way, room
# for the scenario's rooms per session; PARLEY_QUEUE frames per connection.
# Admission limits meant for the internet (connections and handshakes per
# client address) are lifted below when the binary has them: every load
# connection comes from 127.0.0.1.
PARLEY_QUEUE=${PARLEY_QUEUE:-256}
PARLEY_FLAGS=${PARLEY_FLAGS:-"-rate 100000 -burst 100000 -max-rooms 10 -queue $PARLEY_QUEUE -log-level warn"}

mkdir -p "$CACHE" "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-compare.XXXXXX")
SERVER_PID=""

cleanup() {
	local rc=$?
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# The servers need as many descriptors as the load tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- builds

CENTRIFUGO_BIN="$CACHE/centrifugo-$CENTRIFUGO_VERSION"
if [[ " $TARGETS " == *" centrifugo "* ]] && [ ! -x "$CENTRIFUGO_BIN" ]; then
	log "installing Centrifugo $CENTRIFUGO_VERSION with go install (large; a few minutes)"
	GOBIN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/centrifugo-gobin.XXXXXX")
	GOBIN="$GOBIN_TMP" go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
	mv "$GOBIN_TMP/centrifugo" "$CENTRIFUGO_BIN"
	rmdir "$GOBIN_TMP"
fi
log "building parley and parley-load"
go build -o "$WORK/parley" .
go build -o "$WORK/parley-load" ./cmd/parley-load
PARLEY_HELP=$("$WORK/parley" -h 2>&1 || true)
for f in "-max-conns-per-ip 0" "-max-handshake-rate 0" "-max-conns 0"; do
	if grep -q -- "^  ${f% *} " <<<"$PARLEY_HELP" && [[ " $PARLEY_FLAGS " != *" ${f% *} "* ]]; then
		PARLEY_FLAGS="$PARLEY_FLAGS $f"
	fi
done
# The admin listener (if any) is not measured; disabling it also avoids a
# clash with another server's admin port on the same machine.
if grep -q -- "^  -admin-addr " <<<"$PARLEY_HELP" && [[ " $PARLEY_FLAGS " != *" -admin-addr"* ]]; then
	PARLEY_FLAGS="$PARLEY_FLAGS -admin-addr="
fi

cat >"$WORK/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $PORT_CENTRIFUGO},
  "log": {"level": "error"},
  "usage_stats": {"disabled": true},
  "client": {
    "allow_anonymous_connect_without_token": true,
    "allowed_origins": ["*"]
  },
  "channel": {
    "namespaces": [{
      "name": "room",
      "allow_subscribe_for_anonymous": true,
      "allow_subscribe_for_client": true,
      "allow_publish_for_anonymous": true,
      "allow_publish_for_client": true,
      "allow_publish_for_subscriber": true,
      "history_size": 100,
      "history_ttl": "300s"
    }]
  }
}
EOF
cp "$WORK/centrifugo.json" "$OUT/centrifugo.json"
[[ " $TARGETS " == *" centrifugo "* ]] && "$CENTRIFUGO_BIN" checkconfig --config "$WORK/centrifugo.json"

# ---------------------------------------------------------------- servers

wait_port() { # port
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited at start; its log:"; cat "$WORK/server.log" >&2; return 1; }
		sleep 0.05
	done
	log "server did not listen on $1"; return 1
}

start_server() { # target -> sets SERVER_PID, SERVER_URL, SERVER_CMD
	local cmd
	case $1 in
	centrifugo)
		cmd="$CENTRIFUGO_BIN --config $WORK/centrifugo.json"
		SERVER_URL="ws://127.0.0.1:$PORT_CENTRIFUGO/connection/websocket"
		PORT=$PORT_CENTRIFUGO ;;
	parley-proto | parley-json)
		cmd="$WORK/parley -addr 127.0.0.1:$PORT_PARLEY -store memory $PARLEY_FLAGS"
		SERVER_URL="ws://127.0.0.1:$PORT_PARLEY/ws"
		PORT=$PORT_PARLEY ;;
	parley-bolt)
		rm -rf "$WORK/bolt"
		cmd="$WORK/parley -addr 127.0.0.1:$PORT_PARLEY -store bolt -data $WORK/bolt $PARLEY_FLAGS"
		SERVER_URL="ws://127.0.0.1:$PORT_PARLEY/ws"
		PORT=$PORT_PARLEY ;;
	*) log "unknown target $1"; return 1 ;;
	esac
	SERVER_CMD=$cmd
	$cmd >"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	wait_port "$PORT"
}

stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# wait_quiet: until the CPUs are QUIET_IDLE% idle over a second (other
# work on the machine would skew the figures), at most QUIET_WAIT seconds.
cpu_idle_pct() {
	local a b
	read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
	a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)); b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8))
	echo $(((b4 + b5 - a4 - a5) * 100 / (b - a > 0 ? b - a : 1)))
}
wait_quiet() {
	local start=$SECONDS idle
	while :; do
		idle=$(cpu_idle_pct)
		[ "$idle" -ge "$QUIET_IDLE" ] && return 0
		if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
			log "machine still busy ($idle% idle) after ${QUIET_WAIT}s; measuring anyway (see other_cpu_s in the report)"
			return 0
		fi
	done
}

# ---------------------------------------------------------------- runs

load_args() { # target scenario
	local t=$1 args=()
	case $t in
	centrifugo) args+=(-target centrifugo) ;;
	parley-json) args+=(-target parley -codec json) ;;
	*) args+=(-target parley -codec proto) ;;
	esac
	case $2 in
	idle) args+=(-scenario idle -conns "$IDLE_CONNS" -room-size "$IDLE_ROOM_SIZE" -hold "$IDLE_HOLD") ;;
	fanout) args+=(-scenario fanout -members "$FANOUT_MEMBERS" -publishers "$FANOUT_PUBLISHERS" -rate "$FANOUT_RATES" -duration "$FANOUT_DURATION") ;;
	rooms) args+=(-scenario rooms -rooms "$ROOMS_ROOMS" -members "$ROOMS_MEMBERS" -rate "$ROOMS_RATES" -duration "$ROOMS_DURATION") ;;
	churn) args+=(-scenario churn -rooms "$CHURN_ROOMS" -members "$CHURN_MEMBERS" -rate "$CHURN_CHAT" -churn-rate "$CHURN_RATE" -duration "$CHURN_DURATION") ;;
	esac
	printf '%s\n' "${args[@]}"
}

{
	echo "date: $(date -u) (reps $REP_START..$REPS, scenarios: $SCENARIOS, targets: $TARGETS)"
	echo "nproc: $(nproc)"
	echo "go: $(go version)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
	echo "ulimit -n: $(ulimit -n)"
	echo "parley: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain -- . ':!bench' ':!cmd' ':!docs' 2>/dev/null | grep -q . && echo " + uncommitted changes (git diff HEAD sha256 $(git -C "$ROOT" diff HEAD -- . ':!bench' ':!cmd' ':!docs' | sha256sum | cut -c1-12))")"
	echo "centrifugo: $CENTRIFUGO_VERSION (go install; reports version 0.0.0 as built without release ldflags)"
} >>"$OUT/machine.txt"
log "results in $OUT"

for rep in $(seq "$REP_START" "$REPS"); do
	for sc in $SCENARIOS; do
		for t in $TARGETS; do
			wait_quiet
			if ! start_server "$t"; then
				log "rep $rep $sc on $t: the server did not start; skipped"
				stop_server
				continue
			fi
			mapfile -t args < <(load_args "$t" "$sc")
			args+=(-url "$SERVER_URL" -pid "$SERVER_PID" -run-id "r$rep$sc")
			echo "$SERVER_CMD" >"$OUT/${t}_${sc}_${rep}.server"
			log "rep $rep/$REPS $sc on $t: parley-load ${args[*]}"
			if ! "$WORK/parley-load" "${args[@]}" >"$OUT/${t}_${sc}_${rep}.json" 2>"$OUT/${t}_${sc}_${rep}.log"; then
				log "  run reported a failure: $(tail -n 3 "$OUT/${t}_${sc}_${rep}.log" | tr '\n' ' ')"
			fi
			grep -v '^{' "$OUT/${t}_${sc}_${rep}.json" | sed 's/^/    /' >&2 || true
			if ! kill -0 "$SERVER_PID" 2>/dev/null; then
				log "  SERVER DIED during the run; its log:"; tail -n 20 "$WORK/server.log" >&2
			fi
			cp "$WORK/server.log" "$OUT/${t}_${sc}_${rep}.serverlog"
			stop_server
		done
	done
done

echo
cat "$OUT/machine.txt"
echo
TARGETS="$TARGETS" go run ./bench/summarize "$OUT" | tee "$OUT/table.md"
