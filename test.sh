#!/usr/bin/env bash
# Runs every Parley check and test on a fresh Debian machine (as root, or
# with the listed packages already installed). It installs what the tests
# need (protoc for the generated-code check, Chromium for the browser tests,
# PostgreSQL for the store and cluster tests, etcd for the etcd provider's
# test, Node.js and npm for the TypeScript SDK, curl for bench/push.sh), starts PostgreSQL when it is
# down, then runs: generated code up to date, the TypeScript SDK (npm ci,
# its generated types and the page's bundle up to date, its tests), gofmt,
# go vet, staticcheck, go test -race, every benchmark once, and every fuzz
# target briefly.
#
#   ./test.sh            everything
#   FUZZTIME=30s ./test.sh   longer fuzzing
#
# The default fuzz budget is a count of inputs, not a duration: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline exceeded"
# as a failure when the deadline fires while a worker is busy (go.dev/issue/75804,
# fixed in Go 1.27), which failed CI once on a loaded machine with no crasher.
set -euo pipefail
cd "$(dirname "$0")"
FUZZTIME=${FUZZTIME:-20000x}
PGURL=${PARLEY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v etcd >/dev/null || missing+=(etcd-server) # the etcd cluster provider's test
command -v npm >/dev/null || missing+=(nodejs npm)     # clients/ts
command -v curl >/dev/null || missing+=(curl)           # bench/push.sh, which TestPushScenarioSmoke runs
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
want_protoc="libprotoc 3.21.12"
if [ "$(protoc --version)" != "$want_protoc" ]; then
	echo "protoc is '$(protoc --version)'; the generated code is pinned to $want_protoc (Debian 12's protobuf-compiler)" >&2
	exit 1
fi

step "PostgreSQL"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
	pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
if ! psql "$PGURL" -Atqc 'select 1' >/dev/null 2>&1; then
	# A freshly installed server asks for passwords over TCP and has no
	# database "test": trust loopback, as this machine kind's server does.
	ver=$(ls /etc/postgresql | sort -V | tail -n1)
	hba=/etc/postgresql/$ver/main/pg_hba.conf
	grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
	pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
	su postgres -c "createdb test" 2>/dev/null || true
fi
psql "$PGURL" -Atqc 'select version()'

step "generated code is up to date"
go generate ./proto ./proto/api ./actors/actorpb
if ! git diff --quiet -- proto/ actors/actorpb/; then
	git --no-pager diff --stat -- proto/ actors/actorpb/
	echo "generated protobuf code is stale: run 'go generate ./proto ./proto/api ./actors/actorpb' and commit the result" >&2
	exit 1
fi

step "TypeScript SDK (clients/ts): npm ci, generated types and page bundle up to date, build, node --test"
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
	echo "Node.js is $(node --version); clients/ts needs Node.js 20 or later" >&2
	exit 1
fi
(cd clients/ts && npm ci --no-audit --no-fund && npm run --silent generate && npm run --silent bundle)
stale=$(git status --porcelain -- clients/ts/gen web/static/parley-client.js)
if [ -n "$stale" ]; then
	echo "$stale"
	git --no-pager diff --stat -- clients/ts/gen web/static/parley-client.js
	echo "the TypeScript SDK's generated code or the page's bundle is stale: run 'npm run generate && npm run bundle' in clients/ts and commit the result" >&2
	exit 1
fi
sdkbin=$(mktemp -d)
trap 'rm -rf "$sdkbin"' EXIT
go build -o "$sdkbin/parley" .
(cd clients/ts && npm run --silent build && PARLEY_BIN="$sdkbin/parley" npm test)

step "gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags faults .  # the staging-only -faults flag (main_faults.go)
go tool staticcheck ./...

step "go test -race ./..."
go test -race -count=1 -timeout 15m ./...

step "benchmarks, once each (so they never rot)"
go test -run '^$' -bench . -benchtime=1x -timeout 10m ./... >/tmp/parley-bench.txt || { cat /tmp/parley-bench.txt; exit 1; }
grep -E '^(Benchmark|ok|FAIL)' /tmp/parley-bench.txt

step "fuzz targets, $FUZZTIME each (x = inputs)"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz $pkg $target"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/parley-fuzz.txt 2>&1 || { cat /tmp/parley-fuzz.txt; exit 1; }
	done
done

step "all checks passed"
