#!/usr/bin/env bash
# Issue 14: nothing answered goes unaudited, nothing acknowledged is lost.
# Mixed boto3 load (no retries) against `keyhold serve` for CRASH_SECONDS
# (default 60) while the server is killed with SIGKILL every 2 s and
# restarted; then every acknowledged request id must be in the audit file
# exactly once, and every acknowledged key, alias, ciphertext and scheduled
# deletion must be there.
# Usage: e2e/crash_audit.sh PATH_TO_KEYHOLD_BINARY
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

SECONDS_TOTAL=${CRASH_SECONDS:-60}
WORK=$(mktemp -d)
trap 'kill -9 ${KEYHOLD_PID:-} ${LOAD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
DATA=$WORK/data
start_keyhold "$DATA" "$PORT"
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
EP=http://127.0.0.1:$PORT
HERE=$(dirname "$0")

echo "== mixed load for ${SECONDS_TOTAL}s, kill -9 every 2s"
python3 "$HERE/crash_audit.py" load "$EP" "$SECONDS_TOTAL" "$WORK/acks.jsonl" &
LOAD_PID=$!
kills=0
end=$((SECONDS + SECONDS_TOTAL))
while [ $SECONDS -lt $end ]; do
  sleep 2
  kill -9 "$KEYHOLD_PID"
  wait "$KEYHOLD_PID" 2>/dev/null || true
  kills=$((kills + 1))
  start_keyhold "$DATA" "$PORT"
done
wait "$LOAD_PID"
LOAD_PID=
echo "killed $kills times"
python3 "$HERE/crash_audit.py" check "$EP" "$WORK/acks.jsonl" "$DATA/audit/cloudtrail.jsonl"
echo "e2e crash_audit: ok"
