#!/usr/bin/env bash
# bench/push.sh: a push to a crowd larger than one process can hold. NODES
# Parley nodes on loopback in one cluster (automanaged provider, PostgreSQL
# store), PER_NODE members each, all in one room; the load tool's push
# scenario (cmd/parley-load, -scenario push) split over several processes,
# since one process can hold at most about 19,900 sockets (the hard limit on
# open files here is 20,000), each dialing from its own 127.0.0.x address
# (each source address has about 28,000 ephemeral ports).
#
# What it measures, into OUT: resident memory per connection on each node;
# single posts (the time until every member has one: p50, p99, max); steady
# rates (p99, loss, server CPU per million deliveries, relays between nodes
# per post from the nodes' metrics); with STORM=1, a reconnect storm: a node
# that does not hold the room is killed (SIGKILL) while posts flow, and its
# members reconnect to the others with jittered backoff and resume from
# their last seq.
#
#   bench/push.sh                                  # 5 × 19,500 = 97,500 members, proto
#   CODEC=json RATES= bench/push.sh                # the same broadcast, JSON
#   PER_NODE=15000 STORM=1 RATES=2 bench/push.sh   # the storm (survivors need room for the dead node's members)
#   QUICK=1 bench/push.sh                          # 3 nodes × 100, with a storm (what the tests run)
#
# Everything is on 127.0.0.0/8, bounded in time (TIMEOUT), and stopped on
# exit; it creates and drops a PostgreSQL database of its own (PostgreSQL
# at 127.0.0.1:5432, trust auth, as test.sh sets up).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	: "${NODES:=3}" "${PER_NODE:=100}" "${PER_PROC:=160}" "${RATES:=5,10}" "${DURATION:=2s}" "${SINGLES:=2}"
	: "${STORM:=1}" "${STORM_DURATION:=6s}" "${STORM_RATE:=5}" "${TIMEOUT:=4m}" "${SINGLE_GAP:=1s}" "${STEP_GAP:=2s}" "${DRAIN:=3s}"
fi
NODES=${NODES:-5}
PER_NODE=${PER_NODE:-19500}
# Members per load-tool process: under the file limit with room for the
# process's own descriptors.
PER_PROC=${PER_PROC:-19500}
CODEC=${CODEC:-proto}
RATES=${RATES-1,2,4,8,12,16}
DURATION=${DURATION:-10s}
SINGLES=${SINGLES:-5}
SINGLE_GAP=${SINGLE_GAP:-3s}
STEP_GAP=${STEP_GAP:-5s}
STORM=${STORM:-0}
STORM_DURATION=${STORM_DURATION:-60s}
STORM_RATE=${STORM_RATE:-2}
STORM_KILL_AFTER=${STORM_KILL_AFTER:-3}
MAX_P99=${MAX_P99:-1s}
# Members stop once nothing arrived for DRAIN after the poster is done.
DRAIN=${DRAIN:-10s}
TIMEOUT=${TIMEOUT:-25m}
MAX_CONNS=${MAX_CONNS:-19800}
DIAL_CONCURRENCY=${DIAL_CONCURRENCY:-64}
OUT=${OUT:-${TMPDIR:-/tmp}/parley-push-$(date -u +%Y%m%dT%H%M%SZ)}
# STORE: a PostgreSQL URL to use instead of a database of the script's own
# (the tests give a schema of theirs).
STORE=${STORE:-}
DB=parley_push_$$
PGURL=${STORE:-"postgres://postgres@127.0.0.1:5432/$DB"}
# The server's flags for this load: no per-session rate limit in the way of
# the poster, no per-address limits (every member comes from 127.0.0.x),
# no cap on a room's connections, MAX_CONNS per node (under the file limit:
# past it, handshakes get 503 and a reconnecting client tries another node).
# Five nodes and the load processes share the machine's cores: gossip
# heartbeats and health checks may pause for seconds, which must not drop a
# live member (a dropped member never comes back under its id: it is split
# from the others until it restarts).
FLAGS="-rate 100000 -burst 100000 -max-conns-per-ip 0 -max-handshake-rate 0 -max-members 0 -max-conns $MAX_CONNS -cluster-heartbeat-timeout 15s -cluster-down-after 15s -log-level warn"
# NODE_HS_RATE: -max-node-handshake-rate on every node (0: none), the
# admission control that spreads a reconnect storm.
NODE_HS_RATE=${NODE_HS_RATE:-0}
FLAGS="$FLAGS -max-node-handshake-rate $NODE_HS_RATE"
TOTAL=$((NODES * PER_NODE))
PROCS=$(((TOTAL + PER_PROC - 1) / PER_PROC))

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-push.XXXXXX")
DIR="$WORK/run"
mkdir -p "$DIR"
NODE_PIDS=()
TOOL_PIDS=()
stop_all() {
	[ -z "${WATCH_PID:-}" ] || kill "$WATCH_PID" 2>/dev/null || true
	for p in "${TOOL_PIDS[@]}" "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${TOOL_PIDS[@]}" "${NODE_PIDS[@]}"; do
		for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	TOOL_PIDS=() NODE_PIDS=()
}
cleanup() {
	local rc=$?
	stop_all
	for i in $(seq "$NODES"); do cp "$WORK/node$i.log" "$OUT/" 2>/dev/null || true; done
	[ -n "$STORE" ] || psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[push %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ -n "$STORE" ] || psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
log "building parley and parley-load"
go build -o "$WORK/parley" .
go build -o "$WORK/parley-load" ./cmd/parley-load
API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

peers=()
for i in $(seq "$NODES"); do peers+=("127.0.0.1:$((19500 + i))"); done
urls=() metrics=()
for i in $(seq "$NODES"); do
	args=(-addr "127.0.0.1:$((19400 + i))" -admin-addr "127.0.0.1:$((19700 + i))" -store "$PGURL"
		-cluster-provider automanaged -cluster-bind "127.0.0.1:$((19600 + i))"
		-cluster-peers "$(IFS=,; echo "${peers[*]}")" -cluster-health "$((19500 + i))")
	if [ "$i" = 1 ]; then args+=(-api-addr "127.0.0.1:19801"); else args+=(-api-addr ""); fi
	# shellcheck disable=SC2086
	PARLEY_API_KEY=$API_KEY "$WORK/parley" "${args[@]}" $FLAGS >"$WORK/node$i.log" 2>&1 &
	NODE_PIDS+=($!)
	urls+=("ws://127.0.0.1:$((19400 + i))/ws")
	metrics+=("http://127.0.0.1:$((19700 + i))/metrics")
done
for i in $(seq "$NODES"); do
	for _ in $(seq 600); do
		curl -fs "http://127.0.0.1:$((19400 + i))/readyz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fs "http://127.0.0.1:$((19400 + i))/readyz" >/dev/null || { log "node $i not ready"; tail -20 "$WORK/node$i.log" >&2; exit 1; }
done
URLS=$(IFS=,; echo "${urls[*]}")
METRICS=$(IFS=,; echo "${metrics[*]}")
PIDLIST=$(IFS=,; echo "${NODE_PIDS[*]}")
echo "$NODES nodes: parley -store postgres://... -cluster-provider automanaged ... $FLAGS" >"$OUT/server-command.txt"
log "$NODES nodes up ($PIDLIST); $TOTAL members in $PROCS load processes, codec $CODEC"

storm_args=()
if [ "$STORM" = 1 ]; then storm_args=(-storm-duration "$STORM_DURATION" -storm-rate "$STORM_RATE"); fi
POSTER=("$WORK/parley-load" -scenario push -role poster -dir "$DIR" -url "$URLS" -codec "$CODEC"
	-members "$TOTAL" -procs "$PROCS" -rate "${RATES:-none}" -duration "$DURATION" -singles "$SINGLES"
	-single-gap "$SINGLE_GAP" -step-gap "$STEP_GAP" -pid "$PIDLIST" -metrics "$METRICS"
	-api-url "http://127.0.0.1:19801" -timeout "$TIMEOUT" "${storm_args[@]}")
echo "${POSTER[*]/#$WORK\//}" >"$OUT/poster-command.txt"
PARLEY_API_KEY=$API_KEY "${POSTER[@]}" >"$OUT/poster.log" 2>&1 &
POSTER_PID=$!
TOOL_PIDS+=($POSTER_PID)
for k in $(seq 0 $((PROCS - 1))); do
	from=$((k * PER_PROC)) to=$(((k + 1) * PER_PROC))
	[ "$to" -gt "$TOTAL" ] && to=$TOTAL
	MEMBERS=("$WORK/parley-load" -scenario push -role members -dir "$DIR" -url "$URLS" -codec "$CODEC"
		-users "$from-$to" -source-addrs "127.0.0.$((11 + k))" -dial-concurrency "$DIAL_CONCURRENCY" -drain "$DRAIN" -timeout "$TIMEOUT")
	[ "$k" = 0 ] && echo "${MEMBERS[*]/#$WORK\//}   # one per $PER_PROC users, each from its own 127.0.0.x" >"$OUT/members-command.txt"
	"${MEMBERS[@]}" >"$OUT/members$k.log" 2>&1 &
	TOOL_PIDS+=($!)
done

# The storm: once the poster says so, kill a node that holds neither the
# room nor the poster (node 1). In the background, so that a load process
# that fails meanwhile ends the run at once.
storm_watch() {
	while [ ! -e "$DIR/storm" ]; do sleep 0.2; done
	local victim="" i rooms
	for i in $(seq "$NODES" -1 2); do
		rooms=$(curl -fs "http://127.0.0.1:$((19700 + i))/metrics" | awk '$1 == "parley_rooms" {print $2}')
		if [ "${rooms:-1}" = 0 ]; then victim=$i; break; fi
	done
	[ -n "$victim" ] || { log "no node without the room to kill"; return 1; }
	sleep "$STORM_KILL_AFTER"
	kill -KILL "${NODE_PIDS[$((victim - 1))]}"
	date +%s%N >"$DIR/killed"
	log "storm: killed node $victim (pid ${NODE_PIDS[$((victim - 1))]})"
}
WATCH_PID=""
if [ "$STORM" = 1 ]; then
	storm_watch &
	WATCH_PID=$!
fi

# Wait for the load processes; the first that fails ends the run (the
# others would wait for it until TIMEOUT).
rc=0
while [ "${#TOOL_PIDS[@]}" -gt 0 ]; do
	if ! wait -n "${TOOL_PIDS[@]}"; then
		rc=1
		log "a load process failed:"
		tail -n 3 "$OUT"/poster.log "$OUT"/members*.log >&2 || true
		exit 1
	fi
	alive=()
	for p in "${TOOL_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
	TOOL_PIDS=("${alive[@]}")
done
"$WORK/parley-load" -scenario push -role report -dir "$DIR" -url "$URLS" -codec "$CODEC" -max-p99 "$MAX_P99" >"$OUT/report.txt" || rc=1
cp "$DIR"/*.json "$OUT/" 2>/dev/null || true
grep -v '^{' "$OUT/report.txt" >&2
tail -n 1 "$OUT/report.txt" >"$OUT/report.json"
# What the cluster did besides the kill: members dropped while alive (and
# the one of each split that left), and room activations the store fenced.
for i in $(seq "$NODES"); do
	n_drop=$(grep -c 'cluster peer dropped' "$WORK/node$i.log" || true)
	n_split=$(grep -c 'split from another' "$WORK/node$i.log" || true)
	n_fenced=$(grep -c 'another activation of this room stored' "$WORK/node$i.log" || true)
	if [ "$n_drop$n_split$n_fenced" != 000 ]; then
		log "node $i: $n_drop peers dropped, $n_split splits lost (exit 75), $n_fenced room activations fenced"
	fi
done
log "results in $OUT"
exit $rc
