#!/usr/bin/env bash
# Benchmarks of the release binary on loopback (not part of CI: timings on shared machines are
# noisy). Writes a Markdown table to stdout and target/bench/report.md.
#
#   scripts/bench.sh                  # SQLite (default)
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench scripts/bench.sh   # PostgreSQL variant
#   scripts/bench.sh scale            # the scale table: 1k, 100k, 1M runs on SQLite and PostgreSQL
#
# The scale table (examples/scale_bench.rs) generates the rows with SQL, then measures the full
# runs list (time to last byte, peak RSS), pages of 50, a user's own runs, one run, execute
# events per second and cold starts (on PostgreSQL with TLS). BENCH_SCALE_SIZES overrides the
# sizes, BENCH_SCALE_PG the PostgreSQL database (created afresh; default aq_scale_bench on
# TEST_DATABASE_URL's server). Needs several GB of disk at 1M runs and takes a few minutes.
#
# Needs: wrk (installed from the distribution's packages when missing), curl. The Kubernetes
# launch benchmark runs when KUBECONFIG points at a reachable cluster (scripts/kube.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5s}
STARTS=${BENCH_STARTS:-20}
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill ${SERVER_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [[ ${1:-} == scale ]]; then
  echo "building release binary and the scale benchmark" >&2
  cargo build --release --quiet
  cargo build --release --quiet --example scale_bench
  SIZES=${BENCH_SCALE_SIZES:-1000 100000 1000000}
  PG_SERVER=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
  PG=${BENCH_SCALE_PG:-${PG_SERVER%/*}/aq_scale_bench}
  # verify-full needs the server's CA: the certificate file the server names, if readable here.
  CA=$(psql "$PG_SERVER" -Atc 'SHOW ssl_cert_file' 2>/dev/null || true)
  if [[ -n $CA && -r $CA ]]; then export BENCH_PG_CA=$CA; fi
  {
    echo "## Scale report"
    echo
    echo "$(date -u +%Y-%m-%d), $(nproc) cores, release binary, loopback, executed CWL of ${BENCH_CWL_BYTES:-1000} bytes per run"
    echo
    # shellcheck disable=SC2086
    target/release/examples/scale_bench target/release/application-quality-api "sqlite://$WORK/scale.db?mode=rwc" $SIZES
    echo
    # shellcheck disable=SC2086
    target/release/examples/scale_bench target/release/application-quality-api "$PG" $SIZES
  } | tee "$OUT/scale.md"
  exit 0
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
  echo "installing wrk" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) || { echo "wrk is required" >&2; exit 1; }
fi

echo "building release binary" >&2
cargo build --release --quiet
cargo build --release --quiet --example coldstart
cargo build --release --quiet --example session_cookie
BIN=target/release/application-quality-api
COLD=target/release/examples/coldstart

# A prepared database: migrated, seeded, with a user; its generated JWT key makes a token that
# stays valid in every copy.
TEMPLATE=$WORK/template.db
export DATABASE_URL=${BENCH_DATABASE_URL:-sqlite://$TEMPLATE?mode=rwc}
# The default log level (info): one JSON line per request goes to the log file, as in production.
export KUBERNETES=off LOG_FORMAT=json
unset RUST_LOG
if [[ $DATABASE_URL == postgres* ]]; then export DATABASE_AUTO_MIGRATE=true; fi
"$BIN" migrate >/dev/null
"$BIN" seed >/dev/null
APPLICATION_QUALITY_PASSWORD=bench-password-1 "$BIN" user add bench --staff >/dev/null 2>&1 || true

PORT=18099
PORT=$PORT BIND_ADDRESS=127.0.0.1 "$BIN" serve 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/health/readiness" >/dev/null && break; sleep 0.05; done
BASE=http://127.0.0.1:$PORT
TOKEN=$(curl -sf -X POST "$BASE/api/token/" -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"bench-password-1"}' | sed -E 's/.*"access":"([^"]+)".*/\1/')
# A browser session of the same user, sealed as /oidc/callback/ seals it.
COOKIE=$(target/release/examples/session_cookie bench)

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status"; }
IDLE_RSS=$(rss_kib)

cat > "$WORK/health.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"message":"Checking your health!"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "bench-1"
wrk.headers["ce-source"] = "bench"
wrk.headers["ce-type"] = "org.eoepca.application-quality.probes.health"
LUA
cat > "$WORK/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
cat > "$WORK/cookie.lua" <<LUA
wrk.headers["Cookie"] = "$COOKIE"
LUA
cat > "$WORK/token.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"username":"bench","password":"bench-password-1"}'
wrk.headers["Content-Type"] = "application/json"
LUA

ROWS=()
PEAK_RSS=0
# name script path concurrency
run_wrk() {
  local name=$1 script=$2 path=$3 conns=$4
  local out
  local threads=$(( conns < 2 ? conns : 2 ))
  # Reset the peak-RSS mark so each row shows the peak of its own load.
  echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
  out=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "$script" "$BASE$path" 2>&1)
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  local hwm; hwm=$(hwm_kib)
  (( hwm > PEAK_RSS )) && PEAK_RSS=$hwm
  ROWS+=("| $name | $conns | ${rps%.*} | $p50 | $p99 | ${non2xx:-0} | $(( hwm / 1024 )) |")
}

for c in 1 16 64; do run_wrk "health CloudEvent (POST /)" "$WORK/health.lua" / "$c"; done
for c in 1 16 64; do run_wrk "GET /api/pipelines/ (JWT)" "$WORK/auth.lua" /api/pipelines/ "$c"; done
for c in 1 16 64; do run_wrk "GET /api/pipelines/ (session cookie)" "$WORK/cookie.lua" /api/pipelines/ "$c"; done
for c in 16 64; do run_wrk "GET /api/pipelines/_/runs/ (JWT)" "$WORK/auth.lua" /api/pipelines/_/runs/ "$c"; done
for c in 1 4; do run_wrk "POST /api/token/ (argon2id)" "$WORK/token.lua" /api/token/ "$c"; done
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

COLD_READY="n/a"; COLD_AUTH="n/a"
if [[ $DATABASE_URL == sqlite* ]]; then
  COLD_READY=$("$COLD" "$BIN" "$TEMPLATE" /health/readiness "$STARTS")
  COLD_AUTH=$("$COLD" "$BIN" "$TEMPLATE" /api/pipelines/ "$STARTS" "$TOKEN")
fi

LAUNCH="not measured (no KUBECONFIG)"
if [[ -n ${KUBECONFIG:-} ]] && [[ -x target/release/examples/launch_bench || -f examples/launch_bench.rs ]]; then
  cargo build --release --quiet --example launch_bench && LAUNCH=$(target/release/examples/launch_bench 2>/dev/null | tail -n 1) || true
fi

SIZE=$(stat -c %s "$BIN")
{
  echo "## Benchmark report"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, store: ${DATABASE_URL%%:*}, default log level (info), wrk -t min(2,connections) -d$DURATION, loopback"
  echo
  echo "| load | connections | req/s | p50 | p99 | non-2xx | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| cold start -> first 200 on /health/readiness (median max, ms, $STARTS starts) | $COLD_READY |"
  echo "| cold start -> first authenticated GET /api/pipelines/ (median max, ms) | $COLD_AUTH |"
  echo "| pipeline.execute -> Kubernetes objects created | $LAUNCH |"
  echo "| idle RSS after start | $(( IDLE_RSS / 1024 )) MiB |"
  echo "| peak RSS (all loads) | $(( PEAK_RSS / 1024 )) MiB |"
  echo "| release binary (stripped) | $(( SIZE / 1024 / 1024 )) MiB ($SIZE bytes) |"
} | tee "$OUT/report.md"
