#!/usr/bin/env bash
# bench-scale.sh: keyhold with a million keys (issue 13, "scale with keys").
#
# Two `keyhold serve` (SQLite), driven by `keyhold bench`: "small" with
# SMALL keys and "large" with KEYS keys.
#   1. CreateKey up to SMALL keys on small and up to KEYS keys on large (the
#      sustained CreateKey rate is the large run's).
#   2. ROUNDS rounds of DescribeKey then Encrypt over random keys
#      (--random-keys), small and large in turn, so that both see the same
#      machine load: p50 at KEYS keys against p50 at SMALL keys (medians).
#      Each --random-keys run first pages through ListKeys (1,000 a page) for
#      every key id; its time is printed, and the large server's RSS before
#      and after shows whether paging is constant memory.
#   3. Encrypt with every key of large once (--every-key --requests KEYS),
#      then its RSS (VmRSS) and peak (VmHWM): caches must stay bounded.
# Prints one line per run and a summary; the raw JSON of every bench run goes
# to $OUT/runs.jsonl.
#
# Usage: scripts/bench-scale.sh [KEYHOLD_BIN]
# Env: KEYS=1000000 SMALL=1000 ROUNDS=2 DURATION=15s CONCURRENCY=16 NICE=10
#      OUT=(temp) KEEP=0 (1: keep the large data directory in $OUT/data)
#      REUSE=0 (1: $OUT/data already holds the KEYS keys of a kept run:
#      skip their creation, restart the server on it)
#      EVERY=1 (0: skip step 3)
#      PORT=(free) (the large server listens on PORT, the small on PORT+1)
set -euo pipefail
BIN=$(realpath "${1:-/tmp/keyhold}")
KEYS=${KEYS:-1000000}
SMALL=${SMALL:-1000}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-15s}
CONCURRENCY=${CONCURRENCY:-16}
NICE=${NICE:-10}
KEEP=${KEEP:-0}
REUSE=${REUSE:-0}
EVERY=${EVERY:-1}
OUT=${OUT:-$(mktemp -d /tmp/bench-scale.XXXX)}
((KEYS > SMALL && SMALL > 0)) || { echo "KEYS must be larger than SMALL" >&2; exit 2; }
. "$(dirname "$0")/../e2e/lib.sh"
mkdir -p "$OUT"
# The summary reads this run's results only (a REUSE run in a kept $OUT
# would otherwise count the earlier runs' too).
[ ! -e "$OUT/runs.jsonl" ] || mv "$OUT/runs.jsonl" "$OUT/runs.$(date -u +%Y%m%dT%H%M%S).jsonl"
DATA=$OUT/data
SDATA=$OUT/small
[ "$REUSE" = 1 ] || [ ! -e "$DATA" ] || { echo "$DATA exists (REUSE=1 to use it)" >&2; exit 2; }
[ "$REUSE" = 0 ] || [ -s "$DATA/keyhold.db" ] || { echo "REUSE=1 but $DATA/keyhold.db is missing" >&2; exit 2; }
rm -rf "$SDATA"
LPID="" SPID=""
cleanup() {
  kill $LPID $SPID 2>/dev/null && wait $LPID $SPID 2>/dev/null
  rm -rf "$SDATA"
  [ "$KEEP" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT
log() { echo "[bench-scale $(date -u +%H:%M:%S)] $*"; }

# start_keyhold (lib.sh) with nice: the run takes long on a shared machine.
BIN_REAL=$BIN
BIN=$OUT/keyhold-nice
printf '#!/bin/sh\nexec nice -n %d %s "$@"\n' "$NICE" "$BIN_REAL" >"$BIN"
chmod +x "$BIN"
LPORT=${PORT:-$(free_port)}
start_keyhold "$DATA" "$LPORT"
LPID=$KEYHOLD_PID
SPORT=$([ -n "${PORT:-}" ] && echo $((PORT + 1)) || free_port)
start_keyhold "$SDATA" "$SPORT"
SPID=$KEYHOLD_PID

rss() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%d %d\n", r/1024, h/1024}' "/proc/$1/status"; }
bench() { # label small|large, bench args...
  local label=$1 which=$2 out port pid data
  shift 2
  if [ "$which" = large ]; then port=$LPORT pid=$LPID data=$DATA; else port=$SPORT pid=$SPID data=$SDATA; fi
  out=$(nice -n "$NICE" "$BIN_REAL" bench --endpoint "http://127.0.0.1:$port" --credentials-file "$data/credentials" \
    --concurrency "$CONCURRENCY" --json "$@")
  read -r RSS HWM < <(rss "$pid")
  jq -c --arg l "$label" --arg w "$which" --argjson rss "$RSS" --argjson hwm "$HWM" '{label: $l, server: $w, rss_mb: $rss, hwm_mb: $hwm} + .' <<<"$out" >>"$OUT/runs.jsonl"
  jq -r --arg l "$label" --arg w "$which" --arg rss "$RSS" --arg hwm "$HWM" \
    '"\($l) (\($w)): \(.requests) requests, \(.errors) errors, \(.requests_per_second | round)/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms" + (if .keys_listed then ", listed \(.keys_listed) keys in \(.list_seconds * 10 | round / 10) s" else "" end) + "; server RSS \($rss) MB (peak \($hwm) MB)"' <<<"$out"
}

log "keyhold $BIN_REAL; large: $DATA ($KEYS keys$([ "$REUSE" = 1 ] && echo ", reused")), small: $SMALL keys; concurrency $CONCURRENCY, nice $NICE"
log "server RSS at start: large $(rss "$LPID" | cut -d' ' -f1) MB, small $(rss "$SPID" | cut -d' ' -f1) MB"
bench create-small small --op create-key --requests "$SMALL" --duration 1h
if [ "$REUSE" = 0 ]; then
  log "creating $KEYS keys"
  bench create-large large --op create-key --requests "$KEYS" --duration 24h
fi
read -r RSS_BEFORE_LIST _ < <(rss "$LPID")
for r in $(seq 1 "$ROUNDS"); do
  for op in describe-key encrypt; do
    bench "$op-small" small --op "$op" --random-keys --duration "$DURATION"
    bench "$op-large" large --op "$op" --random-keys --duration "$DURATION"
  done
done
if [ "$EVERY" = 1 ]; then
  log "encrypting with every key of large once"
  bench encrypt-every large --op encrypt --every-key --requests "$KEYS" --duration 24h
fi
read -r RSS_END HWM_END < <(rss "$LPID")
DB_MB=$(du -m "$DATA/keyhold.db" | cut -f1)

echo
echo "== summary ($KEYS keys against $SMALL; medians of $ROUNDS rounds run in turn)"
jq -rn --slurpfile r "$OUT/runs.jsonl" --arg keys "$KEYS" --arg small "$SMALL" \
  --arg rss_list "$RSS_BEFORE_LIST" --arg rss "$RSS_END" --arg hwm "$HWM_END" --arg db "$DB_MB" '
  def runs($l): $r | map(select(.label == $l));
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def p50($l): runs($l) | map(.latency_ms.p50) | median | . * 1000 | round / 1000;
  def r3: . * 1000 | round / 1000;
  (runs("create-large") | if length > 0 then "CreateKey sustained to \($keys) keys: \(.[0].requests_per_second | round)/s (\(.[0].errors) errors)" else "CreateKey: large keys reused" end),
  "DescribeKey p50: \(p50("describe-key-small")) ms at \($small) keys, \(p50("describe-key-large")) ms at \($keys): \((p50("describe-key-large") / p50("describe-key-small")) | r3)x (target <= 1.2x)",
  "Encrypt p50:     \(p50("encrypt-small")) ms at \($small) keys, \(p50("encrypt-large")) ms at \($keys): \((p50("encrypt-large") / p50("encrypt-small")) | r3)x (target <= 1.2x)",
  "ListKeys through \(runs("describe-key-large")[0].keys_listed) keys: \(runs("describe-key-large") | map(.list_seconds) | median | r3) s (median); large server RSS before the first listing \($rss_list) MB, after each run: \(runs("describe-key-large") + runs("encrypt-large") | map(.rss_mb) | map(tostring) | join(", ")) MB",
  (runs("encrypt-every") | if length > 0 then "Encrypt with each of \(.[0].requests) keys once: \(.[0].errors) errors; large server RSS after \($rss) MB, peak \($hwm) MB (target <= 300 MB)" else "large server RSS at the end \($rss) MB, peak \($hwm) MB" end),
  "database: \($db) MB"'
log "raw runs: $OUT/runs.jsonl"
