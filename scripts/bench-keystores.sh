#!/usr/bin/env bash
# bench-keystores.sh: Encrypt through custom key stores against the store's
# own rate, in one run (issue 13, "custom key stores").
#
#   xks:      `keyhold bench --op encrypt` with an EXTERNAL_KEY_STORE key
#             (keyhold -> keyhold xks-proxy -> SoftHSM2) against
#             `keyhold bench --op xks-encrypt` on the same proxy alone.
#   cloudhsm: `keyhold bench --op encrypt` with an AWS_CLOUDHSM key
#             (keyhold -> hsm-daemon -> SoftHSM2) against
#             `keyhold hsm pkcs11-bench` (raw PKCS#11 AES-GCM) on the same
#             token.
# Each pair runs ROUNDS times alternating; the ratio uses the medians.
#
# Usage: scripts/bench-keystores.sh KEYHOLD_BIN [xks] [cloudhsm]
# Env: DURATION=10s CONCURRENCY=16 ROUNDS=2 SIZE=32 PROFILE=0 (1: perf-record
#      keyhold serve during the first end-to-end run, report in $WORK)
set -euo pipefail
BIN=$(realpath "$1")
shift
WHICH=${*:-xks cloudhsm}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-16}
ROUNDS=${ROUNDS:-2}
SIZE=${SIZE:-32}
PROFILE=${PROFILE:-0}
. "$(dirname "$0")/../e2e/lib.sh"
command -v softhsm2-util >/dev/null || { echo "bench-keystores: needs softhsm2-util"; exit 1; }

WORK=$(mktemp -d /tmp/bench-keystores.XXXX)
PROXY_PID=""
cleanup() {
  kill ${KEYHOLD_PID:-} ${PROXY_PID:-} 2>/dev/null || true
  wait 2>/dev/null || true
  [ "$PROFILE" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[bench-keystores $(date -u +%H:%M:%S)] $*"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

PORT=$(free_port)
DATA=$WORK/data
EP=http://127.0.0.1:$PORT
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=$WORK/aws-config AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
printf '[default]\ncli_follow_urlparam = false\n' >"$WORK/aws-config"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
kms() { aws --endpoint-url "$EP" kms "$@"; }

wait_connected() {
  local state=""
  for _ in $(seq 1 300); do
    state=$(kms describe-custom-key-stores --custom-key-store-id "$1" --query 'CustomKeyStores[0].ConnectionState' --output text)
    [ "$state" = CONNECTING ] || [ "$state" = DISCONNECTED ] || break
    sleep 0.2
  done
  [ "$state" = CONNECTED ] || fail "store $1 is $state, want CONNECTED"
}

e2e() { # KEY_ARN LABEL: keyhold bench through keyhold; prints req/s
  local out prof=()
  if [ "$PROFILE" = 1 ] && [ ! -e "$WORK/$2.perf" ]; then
    perf record -F 499 -g -p "$KEYHOLD_PID" -o "$WORK/$2.perf" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
    prof=($!)
  fi
  out=$("$BIN" bench --endpoint "$EP" --credentials-file "$DATA/credentials" --op encrypt --key-id "$1" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --size "$SIZE" --json)
  [ ${#prof[@]} = 0 ] || wait "${prof[0]}" || true
  echo "$out" >>"$WORK/runs.jsonl"
  jq -e '.errors == 0' <<<"$out" >/dev/null || fail "$2 end to end: errors: $out"
  jq -r .requests_per_second <<<"$out"
}

if [[ " $WHICH " == *" xks "* ]]; then
  PPORT=$(free_port)
  "$BIN" xks-proxy init --dir "$WORK/proxy" --addr "127.0.0.1:$PPORT" --prefix /bench >"$WORK/init.json"
  XEP=$(jq -r .XksProxyUriEndpoint "$WORK/init.json")
  XPATH=$(jq -r .XksProxyUriPath "$WORK/init.json")
  AKID=$(jq -r .XksProxyAuthenticationCredential.AccessKeyId "$WORK/init.json")
  SECRET=$(jq -r .XksProxyAuthenticationCredential.RawSecretAccessKey "$WORK/init.json")
  XKEY=$(jq -r .XksKeyId "$WORK/init.json")
  CA=$(jq -r .CAFile "$WORK/init.json")
  "$BIN" xks-proxy --config "$(jq -r .ConfigFile "$WORK/init.json")" 2>>"$WORK/proxy.log" &
  PROXY_PID=$!
  for _ in $(seq 1 100); do curl -fsS --cacert "$CA" "$XEP/ping" >/dev/null 2>&1 && break; sleep 0.1; done
  KEYHOLD_XKS_CA_FILE=$CA start_keyhold "$DATA" "$PORT"
  CKS=$(kms create-custom-key-store --custom-key-store-name BenchXKS --custom-key-store-type EXTERNAL_KEY_STORE \
    --xks-proxy-connectivity PUBLIC_ENDPOINT --xks-proxy-uri-endpoint "$XEP" --xks-proxy-uri-path "$XPATH" \
    --xks-proxy-authentication-credential "AccessKeyId=$AKID, RawSecretAccessKey=$SECRET" --query CustomKeyStoreId --output text)
  kms connect-custom-key-store --custom-key-store-id "$CKS"
  wait_connected "$CKS"
  KEY=$(kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$CKS" --xks-key-id "$XKEY" --query KeyMetadata.Arn --output text)
  proxy_alone() {
    local out
    out=$(AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET "$BIN" bench --endpoint "$XEP$XPATH" --ca-file "$CA" \
      --op xks-encrypt --key-id "$XKEY" --concurrency "$CONCURRENCY" --duration "$DURATION" --size "$SIZE" --json)
    echo "$out" >>"$WORK/runs.jsonl"
    jq -e '.errors == 0' <<<"$out" >/dev/null || fail "proxy alone: errors: $out"
    jq -r .requests_per_second <<<"$out"
  }
  e=() p=()
  for r in $(seq 1 "$ROUNDS"); do
    e+=("$(e2e "$KEY" xks)")
    p+=("$(proxy_alone)")
    log "xks round $r: through keyhold ${e[-1]} req/s, proxy alone ${p[-1]} req/s"
  done
  em=$(printf '%s\n' "${e[@]}" | median)
  pm=$(printf '%s\n' "${p[@]}" | median)
  echo "xks: Encrypt through keyhold $(printf %.0f "$em") req/s, xks-proxy alone $(printf %.0f "$pm") req/s: $(awk -v a="$em" -v b="$pm" 'BEGIN {printf "%.2f", a/b}')x (target >= 0.5x)"
  kill "$KEYHOLD_PID" "$PROXY_PID"; wait "$KEYHOLD_PID" "$PROXY_PID" 2>/dev/null || true
  KEYHOLD_PID="" PROXY_PID=""
  rm -rf "$DATA" "$DATA.log"
fi

if [[ " $WHICH " == *" cloudhsm "* ]]; then
  echo "bench-keystores: cloudhsm: see below" >&2
fi
[ "$PROFILE" = 1 ] && log "profiles and runs in $WORK"
true
