#!/usr/bin/env bash
# bench/ab.sh: one parley-load scenario against two or more Parley binaries,
# interleaved (A B A B ...), a fresh server per run, REPS runs each, then the
# medians side by side. For before/after figures measured in one sitting:
#
#   git archive OLD | tar -x -C /tmp/old && (cd /tmp/old && go build -o /tmp/parley-old .)
#   go build -o /tmp/parley-new .
#   bench/ab.sh /tmp/parley-old /tmp/parley-new -- -scenario idle -conns 10000 -hold 10s
#   bench/ab.sh /tmp/parley-old /tmp/parley-new -- -scenario fanout -rate 750 -duration 5s
#   STORE=bolt bench/ab.sh ... -- -scenario rooms -rate 1000,2000,3000 -duration 5s
#
# Servers get bench/compare.sh's flags (limits lifted, -queue 256, admin off).
# Env: REPS (3), STORE (memory or bolt), LOAD (a parley-load binary; default:
# built from this tree), OUT (where the JSON reports go; printed), SERVER_ENV
# (extra environment for the servers, e.g. "GODEBUG=gctrace=1").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
STORE=${STORE:-memory}
PORT=${PORT:-18080}
OUT=${OUT:-${TMPDIR:-/tmp}/parley-ab-$(date -u +%Y%m%dT%H%M%SZ)}
FLAGS="-rate 100000 -burst 100000 -max-rooms 10 -queue 256 -log-level warn -max-conns-per-ip 0 -max-handshake-rate 0 -max-conns 0 -admin-addr="

bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#bins[@]} -lt 1 ] || [ $# -lt 1 ]; then
	echo "usage: bench/ab.sh BIN [BIN...] -- PARLEY-LOAD-ARGS..." >&2
	exit 2
fi
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/parley-ab.XXXXXX")
SERVER_PID=""
cleanup() {
	if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LOAD=${LOAD:-}
if [ -z "$LOAD" ]; then
	(cd "$ROOT" && go build -o "$WORK/parley-load" ./cmd/parley-load)
	LOAD=$WORK/parley-load
fi
echo "ab: results in $OUT; load: $LOAD $*" >&2

for rep in $(seq "$REPS"); do
	for i in "${!bins[@]}"; do
		b=${bins[$i]}
		rm -rf "$WORK/bolt"
		# shellcheck disable=SC2086
		env ${SERVER_ENV:-} "$b" -addr "127.0.0.1:$PORT" -store "$STORE" -data "$WORK/bolt" $FLAGS >"$OUT/$i-$rep.serverlog" 2>&1 &
		SERVER_PID=$!
		for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
		"$LOAD" -url "ws://127.0.0.1:$PORT/ws" -pid "$SERVER_PID" -run-id "ab$rep$i" "$@" >"$OUT/$i-$rep.json" 2>"$OUT/$i-$rep.log" || true
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
		echo "ab: rep $rep bin $i ($b): $(grep -v '^{' "$OUT/$i-$rep.json" | grep -E 'KiB per connection|highest|step' | head -3 | tr '\n' ' ')" >&2
	done
done

# Medians per binary: idle RSS per connection, or per offered rate the
# server CPU-s per 1M deliveries, deliveries/s and p99, plus the highest
# passing rate.
med='sort_by(.) | if length == 0 then null else .[(length - 1) / 2 | floor] end'
for i in "${!bins[@]}"; do
	echo "== ${bins[$i]} (medians of $REPS)"
	cat "$OUT"/"$i"-*.json | grep '^{' | jq -s -r "
	  (map(.idle.rss_per_conn_kb // empty) | $med) as \$rss |
	  (if \$rss then \"idle KiB/conn: \(\$rss)  (runs: \(map(.idle.rss_per_conn_kb) | map(tostring) | join(\", \")))\" else empty end),
	  \"highest passing rate: \(map(.max_ok_rate) | $med)  (runs: \(map(.max_ok_rate) | map(tostring) | join(\", \")))\",
	  (map(.steps // [] | .[]) | group_by(.offered_rate) | .[] |
	    \"  rate \(.[0].offered_rate): cpu-s/1M \(map(.server_cpu_s_per_1m_deliveries) | $med | . * 1000 | round / 1000)  deliv/s \(map(.deliveries_per_s) | $med | round)  p99 ms \(map(.latency.p99_ms) | $med)  ok \(map(.ok) | map(tostring) | join(\",\"))  (cpu-s/1M runs: \(map(.server_cpu_s_per_1m_deliveries * 1000 | round / 1000) | map(tostring) | join(\", \")))\")
	"
done
