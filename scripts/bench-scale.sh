#!/usr/bin/env bash
# bench-scale.sh: keyhold with a million keys (issue 13, "scale with keys").
#
# One `keyhold serve` on an empty data directory (SQLite), driven by
# `keyhold bench`:
#   1. CreateKey up to SMALL keys; DescribeKey and Encrypt over random keys
#      (--random-keys): p50 at SMALL keys.
#   2. CreateKey up to KEYS keys (the sustained CreateKey rate).
#   3. DescribeKey and Encrypt over random keys: p50 at KEYS keys, and the
#      ratio to step 1. Each --random-keys run first pages through ListKeys
#      (1,000 a page) for every key id; the time is printed, and the server's
#      RSS before and after the listing shows whether paging is constant
#      memory.
#   4. Encrypt with every key once (--every-key --requests KEYS), then the
#      server's RSS (VmRSS) and peak (VmHWM): caches must stay bounded.
# Prints one line per step and a summary; the raw JSON of every bench run
# goes to $OUT/runs.jsonl.
#
# Usage: scripts/bench-scale.sh [KEYHOLD_BIN]
# Env: KEYS=1000000 SMALL=1000 DURATION=15s CONCURRENCY=16 NICE=10 OUT=(temp)
#      KEEP=0 (1: keep the data directory)
set -euo pipefail
BIN=$(realpath "${1:-/tmp/keyhold}")
KEYS=${KEYS:-1000000}
SMALL=${SMALL:-1000}
DURATION=${DURATION:-15s}
CONCURRENCY=${CONCURRENCY:-16}
NICE=${NICE:-10}
KEEP=${KEEP:-0}
OUT=${OUT:-$(mktemp -d /tmp/bench-scale.XXXX)}
((KEYS > SMALL && SMALL > 0)) || { echo "KEYS must be larger than SMALL" >&2; exit 2; }
. "$(dirname "$0")/../e2e/lib.sh"
mkdir -p "$OUT"
DATA=$OUT/data
cleanup() {
  [ -n "${KEYHOLD_PID:-}" ] && kill "$KEYHOLD_PID" 2>/dev/null && wait "$KEYHOLD_PID" 2>/dev/null
  [ "$KEEP" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT
PORT=$(free_port)
EP=http://127.0.0.1:$PORT
log() { echo "[bench-scale $(date -u +%H:%M:%S)] $*"; }

# start_keyhold (lib.sh) with nice: the run takes long on a shared machine.
BIN_REAL=$BIN
BIN=$OUT/keyhold-nice
printf '#!/bin/sh\nexec nice -n %d %s "$@"\n' "$NICE" "$BIN_REAL" >"$BIN"
chmod +x "$BIN"
start_keyhold "$DATA" "$PORT"
CREDS=$DATA/credentials

rss() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%d %d\n", r/1024, h/1024}' "/proc/$KEYHOLD_PID/status"; }
bench() { # label, bench args...
  local label=$1; shift
  local out
  out=$(nice -n "$NICE" "$BIN_REAL" bench --endpoint "$EP" --credentials-file "$CREDS" --concurrency "$CONCURRENCY" --json "$@")
  jq -c --arg l "$label" '{label: $l} + .' <<<"$out" >>"$OUT/runs.jsonl"
  read -r RSS HWM < <(rss)
  jq -r --arg l "$label" --arg rss "$RSS" --arg hwm "$HWM" \
    '"\($l): \(.requests) requests, \(.errors) errors, \(.requests_per_second | round)/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms" + (if .keys_listed then ", listed \(.keys_listed) keys in \(.list_seconds * 10 | round / 10) s" else "" end) + "; server RSS \($rss) MB (peak \($hwm) MB)"' <<<"$out"
  LAST=$out
}
field() { jq -r "select(.label == \"$1\") | $2" "$OUT/runs.jsonl"; }

log "keyhold $BIN_REAL, data $DATA, $KEYS keys (small: $SMALL), concurrency $CONCURRENCY, nice $NICE"
read -r RSS0 _ < <(rss)
log "server RSS at start: $RSS0 MB"
bench create-small --op create-key --requests "$SMALL" --duration 1h
bench describe-small --op describe-key --random-keys --duration "$DURATION"
bench encrypt-small --op encrypt --random-keys --duration "$DURATION"

left=$((KEYS - SMALL))
log "creating $left more keys"
bench create-rest --op create-key --requests "$left" --duration 24h
read -r RSS_BEFORE_LIST _ < <(rss)
bench describe-large --op describe-key --random-keys --duration "$DURATION"
bench encrypt-large --op encrypt --random-keys --duration "$DURATION"
log "encrypting with every key once"
bench encrypt-every --op encrypt --every-key --requests "$KEYS" --duration 24h
read -r RSS_END HWM_END < <(rss)
DB_MB=$(du -m "$DATA/keyhold.db" | cut -f1)

echo
echo "== summary ($KEYS keys; ratios from one run)"
jq -rn --slurpfile r "$OUT/runs.jsonl" --arg keys "$KEYS" --arg small "$SMALL" \
  --arg rss_list "$RSS_BEFORE_LIST" --arg rss "$RSS_END" --arg hwm "$HWM_END" --arg db "$DB_MB" '
  def run($l): $r | map(select(.label == $l)) | .[0];
  def r3: . * 1000 | round / 1000;
  "CreateKey sustained to \($keys) keys: \(run("create-rest").requests_per_second | round)/s (\(run("create-rest").errors) errors)",
  "DescribeKey p50: \(run("describe-small").latency_ms.p50) ms at \($small) keys, \(run("describe-large").latency_ms.p50) ms at \($keys): \((run("describe-large").latency_ms.p50 / run("describe-small").latency_ms.p50) | r3)x (target <= 1.2x)",
  "Encrypt p50:     \(run("encrypt-small").latency_ms.p50) ms at \($small) keys, \(run("encrypt-large").latency_ms.p50) ms at \($keys): \((run("encrypt-large").latency_ms.p50 / run("encrypt-small").latency_ms.p50) | r3)x (target <= 1.2x)",
  "ListKeys through \(run("describe-large").keys_listed) keys: \(run("describe-large").list_seconds | r3) s; server RSS before the listings \($rss_list) MB",
  "Encrypt with each of \(run("encrypt-every").requests) keys once: \(run("encrypt-every").errors) errors; server RSS after \($rss) MB, peak \($hwm) MB (target <= 300 MB)",
  "database: \($db) MB"'
log "raw runs: $OUT/runs.jsonl"
