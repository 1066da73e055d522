#!/usr/bin/env bash
# bench/cluster.sh: the cost of the cluster hop. The load tool's fanout and
# rooms scenarios against one Parley node and against three clustered nodes
# (automanaged provider) on this machine, both with PostgreSQL history (a
# cluster requires it), REPS repetitions, medians. On one box three nodes add
# no capacity: what this measures is what a delivery costs when its room
# lives on another node (one Relay per member per fan-out, gRPC on
# loopback), in server CPU summed over the nodes and in latency.
#
#   bench/cluster.sh                 # REPS=3
#   QUICK=1 bench/cluster.sh         # smoke check
#
# Needs PostgreSQL at 127.0.0.1:5432 (trust auth), as test.sh sets up; it
# creates and drops a database of its own.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QUICK=${QUICK:-0}
REPS=${REPS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-1000}
FANOUT_RATES=${FANOUT_RATES:-$([ "$QUICK" = 1 ] && echo 100 || echo 200,400,800,1200,1600,2400)}
ROOMS_ROOMS=${ROOMS_ROOMS:-$([ "$QUICK" = 1 ] && echo 50 || echo 1000)}
ROOMS_MEMBERS=${ROOMS_MEMBERS:-10}
ROOMS_RATES=${ROOMS_RATES:-$([ "$QUICK" = 1 ] && echo 200 || echo 1000,2000,3000,4000,6000)}
DURATION=${DURATION:-$([ "$QUICK" = 1 ] && echo 2s || echo 5s)}
OUT=${OUT:-${TMPDIR:-/tmp}/parley-cluster-bench-$(date -u +%Y%m%dT%H%M%SZ)}
DB=parley_cluster_bench_$$
PGURL="postgres://postgres@127.0.0.1:5432/$DB"
FLAGS="-rate 100000 -burst 100000 -max-rooms 10 -log-level warn -admin-addr= -max-conns-per-ip 0 -max-handshake-rate 0 -max-conns 0"

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-cluster.XXXXXX")
PIDS=()
stop_nodes() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	PIDS=()
}
cleanup() {
	local rc=$?
	stop_nodes
	psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[cluster-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
log "building parley and parley-load"
go build -o "$WORK/parley" .
go build -o "$WORK/parley-load" ./cmd/parley-load

wait_ready() { # addr
	for _ in $(seq 400); do
		curl -fs "http://$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	log "node at $1 not ready"; return 1
}

# start N: one node (N=1, no cluster) or a cluster of N; sets URLS, PIDLIST.
start() {
	local n=$1 i urls=() peers=()
	for i in $(seq "$n"); do peers+=("127.0.0.1:$((19100 + i))"); done
	for i in $(seq "$n"); do
		local args=(-addr "127.0.0.1:$((19000 + i))" -store "$PGURL")
		if [ "$n" -gt 1 ]; then
			args+=(-cluster-provider automanaged -cluster-bind "127.0.0.1:$((19200 + i))"
				-cluster-peers "$(IFS=,; echo "${peers[*]}")" -cluster-health "$((19100 + i))")
		fi
		# shellcheck disable=SC2086
		"$WORK/parley" "${args[@]}" $FLAGS >"$WORK/node$i.log" 2>&1 &
		PIDS+=($!)
		urls+=("ws://127.0.0.1:$((19000 + i))/ws")
	done
	for i in $(seq "$n"); do wait_ready "127.0.0.1:$((19000 + i))"; done
	URLS=$(IFS=,; echo "${urls[*]}")
	PIDLIST=$(IFS=,; echo "${PIDS[*]}")
	SERVER_CMD="$n node(s): parley -store postgres://... $FLAGS"
	if [ "$n" -gt 1 ]; then SERVER_CMD="$SERVER_CMD -cluster-provider automanaged ..."; fi
}

for rep in $(seq "$REPS"); do
	for sc in fanout rooms; do
		for n in 1 3; do
			start "$n"
			case $sc in
			fanout) args=(-scenario fanout -members "$FANOUT_MEMBERS" -publishers 10 -rate "$FANOUT_RATES") ;;
			rooms) args=(-scenario rooms -rooms "$ROOMS_ROOMS" -members "$ROOMS_MEMBERS" -rate "$ROOMS_RATES") ;;
			esac
			args+=(-duration "$DURATION" -url "$URLS" -pid "$PIDLIST" -run-id "c$rep$sc$n")
			log "rep $rep/$REPS $sc on $n node(s): parley-load ${args[*]}"
			echo "$SERVER_CMD" >"$OUT/${n}node_${sc}_${rep}.server"
			"$WORK/parley-load" "${args[@]}" >"$OUT/${n}node_${sc}_${rep}.json" 2>"$OUT/${n}node_${sc}_${rep}.log" ||
				log "  run reported a failure: $(tail -n 2 "$OUT/${n}node_${sc}_${rep}.log" | tr '\n' ' ')"
			grep -v '^{' "$OUT/${n}node_${sc}_${rep}.json" | sed 's/^/    /' >&2 || true
			stop_nodes
		done
	done
done

# One line per run, then medians: the highest rate with p99 < 250 ms and no
# loss, and CPU-s per 1M deliveries and p50/p99 at the first (lowest) rate.
{
	echo "| nodes | scenario | runs | max ok posts/s (median) | deliveries/s there | CPU-s per 1M deliveries @ first rate | p50 / p99 ms @ first rate | lost / dup |"
	echo "|---|---|---|---|---|---|---|---|"
	for sc in fanout rooms; do
		for n in 1 3; do
			grep -h '^{' "$OUT/${n}node_${sc}"_*.json | jq -s -r --arg n "$n" --arg sc "$sc" '
				def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
				[.[] | select(.steps != null)] as $r |
				"| \($n) | \($sc) | \($r | length) | \([$r[].max_ok_rate] | med) | \([$r[].max_ok_deliveries_per_s] | med | floor) | \([$r[].steps[0].server_cpu_s_per_1m_deliveries] | med | . * 100 | round / 100) | \([$r[].steps[0].latency.p50_ms] | med) / \([$r[].steps[0].latency.p99_ms] | med) | \([$r[].lost] | add) / \([$r[].dup] | add) |"
			'
		done
	done
} | tee "$OUT/table.md"
log "reports in $OUT"
