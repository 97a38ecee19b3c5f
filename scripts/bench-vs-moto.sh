#!/usr/bin/env bash
# bench-vs-moto.sh: run the same `keyhold bench` load (Encrypt, 32-byte
# plaintext, SigV4-signed like an SDK) against keyhold and against moto in one
# run, print both results and the throughput ratio keyhold/moto.
#
# Usage:
#   scripts/bench-vs-moto.sh [KEYHOLD_BIN [ENDPOINT CREDENTIALS_FILE]]
#
#   KEYHOLD_BIN        the keyhold binary (default /tmp/keyhold; build it with
#                      `go build -o /tmp/keyhold ./cmd/keyhold`). It runs the
#                      bench, and `keyhold serve` when no endpoint is given.
#   ENDPOINT CREDS     an already running keyhold and its credentials file
#                      (aws shared-credentials format). Without them the script
#                      starts `keyhold serve --data-dir TMP --addr 127.0.0.1:PORT`
#                      and uses TMP/credentials.
#
# Environment: DURATION (10s), CONCURRENCY (16), SIZE (32), MOTO_ONLY=1 (skip
# keyhold: bench moto only, e.g. before keyhold serve exists).
# Needs python3 with moto installed (python3 -m moto.server) and jq.
# Every server it starts listens on 127.0.0.1 and is killed on exit.
set -euo pipefail

KEYHOLD=${1:-/tmp/keyhold}
ENDPOINT=${2:-}
CREDS=${3:-}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-16}
SIZE=${SIZE:-32}
MOTO_ONLY=${MOTO_ONLY:-0}

die() { echo "bench-vs-moto: $*" >&2; exit 1; }

[ -x "$KEYHOLD" ] || die "keyhold binary $KEYHOLD not found or not executable (go build -o /tmp/keyhold ./cmd/keyhold)"
command -v jq >/dev/null || die "jq is required"
python3 -c 'import moto' 2>/dev/null || die "moto is not installed for python3 (pip install 'moto[server]')"
if [ -n "$ENDPOINT" ] && [ -z "$CREDS" ]; then die "an ENDPOINT needs its CREDENTIALS_FILE"; fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL LOG NAME PID: wait up to 30 s for URL to answer 200, giving
# up at once if the server process PID exits.
wait_http() {
  local url=$1 log=$2 name=$3 pid=$4 i
  for i in $(seq 1 120); do
    if [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$url" || true)" = 200 ]; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  echo "--- last lines of the $name log ---" >&2
  tail -n 20 "$log" >&2 || true
  die "$name did not become ready at $url"
}

# run_bench NAME ENDPOINT CREDS: bench one server, JSON on stdout.
run_bench() {
  local name=$1 ep=$2 creds=$3
  echo "== $name: encrypt, size $SIZE, concurrency $CONCURRENCY, $DURATION at $ep" >&2
  "$KEYHOLD" bench --endpoint "$ep" --op encrypt --size "$SIZE" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --credentials-file "$creds" --json
}

# moto
MOTO_PORT=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
MOTO_EP="http://127.0.0.1:$MOTO_PORT"
printf '[default]\naws_access_key_id = test\naws_secret_access_key = test\n' >"$WORK/moto-credentials"
wait_http "$MOTO_EP/moto-api/" "$WORK/moto.log" moto "${PIDS[-1]}"

# keyhold
if [ "$MOTO_ONLY" != 1 ] && [ -z "$ENDPOINT" ]; then
  KH_PORT=$(free_port)
  mkdir -p "$WORK/keyhold-data"
  "$KEYHOLD" serve --data-dir "$WORK/keyhold-data" --addr "127.0.0.1:$KH_PORT" >"$WORK/keyhold.log" 2>&1 &
  PIDS+=($!)
  ENDPOINT="http://127.0.0.1:$KH_PORT"
  CREDS="$WORK/keyhold-data/credentials"
  wait_http "$ENDPOINT/healthz" "$WORK/keyhold.log" "keyhold serve" "${PIDS[-1]}"
  [ -s "$CREDS" ] || die "keyhold serve wrote no $CREDS"
fi

MOTO_JSON=$(run_bench moto "$MOTO_EP" "$WORK/moto-credentials")
echo "moto:    $MOTO_JSON"
if [ "$MOTO_ONLY" = 1 ]; then
  exit 0
fi
KH_JSON=$(run_bench keyhold "$ENDPOINT" "$CREDS")
echo "keyhold: $KH_JSON"

jq -rn --argjson k "$KH_JSON" --argjson m "$MOTO_JSON" '
  def row($n; $r): "\($n)\t\($r.requests_per_second | floor) req/s\terrors \($r.errors)\tp50 \($r.latency_ms.p50) ms\tp99 \($r.latency_ms.p99) ms";
  row("keyhold"; $k), row("moto"; $m),
  (if $m.requests_per_second > 0
   then "throughput ratio keyhold/moto: \(($k.requests_per_second / $m.requests_per_second * 100 | round) / 100)"
   else "throughput ratio keyhold/moto: n/a (moto served nothing)" end)'
if [ "$(jq -n --argjson k "$KH_JSON" --argjson m "$MOTO_JSON" '$k.errors + $m.errors')" != 0 ]; then
  die "some requests failed (see first_error above)"
fi
