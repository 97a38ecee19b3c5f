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
#      PORT_BASE= (listen on PORT_BASE and PORT_BASE+1 instead of free ports)
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
# cpu PID...: utime+stime of the processes, in clock ticks.
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
TICK=$(getconf CLK_TCK)
# us_per_req TICKS REQUESTS
us_per_req() { awk -v t="$1" -v n="$2" -v hz="$TICK" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}'; }
# loadgen ARGS...: keyhold bench ARGS, its user+system CPU seconds in $WORK/loadgen.time
# (the load generator shares the machine's cores with what it measures).
loadgen() { /usr/bin/time -f '%U %S' -o "$WORK/loadgen.time" "$BIN" bench "$@"; }
loadgen_us() { awk -v n="$1" '{printf "%.0f", ($1 + $2) * 1e6 / n}' "$WORK/loadgen.time"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

PORT=${PORT_BASE:-$(free_port)}
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

e2e() { # KEY_ARN LABEL [PIDS...]: keyhold bench through keyhold; prints "req/s keyhold-µs/req others-µs/req loadgen-µs/req"
  local key=$1 label=$2 out prof=() c0 o0
  shift 2
  if [ "$PROFILE" = 1 ] && [ ! -e "$WORK/$label.perf" ]; then
    perf record -F 499 -g -p "$KEYHOLD_PID" -o "$WORK/$label.perf" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
    prof=($!)
    for p in "$@"; do
      perf record -F 499 -g -p "$p" -o "$WORK/$label-behind-$p.perf" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
      prof+=($!)
    done
  fi
  c0=$(cpu "$KEYHOLD_PID") o0=$(cpu "$@")
  out=$(loadgen --endpoint "$EP" --credentials-file "$DATA/credentials" --op encrypt --key-id "$key" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --size "$SIZE" --json)
  c0=$(($(cpu "$KEYHOLD_PID") - c0)) o0=$(($(cpu "$@") - o0))
  [ ${#prof[@]} = 0 ] || wait "${prof[@]}" || true
  echo "$out" >>"$WORK/runs.jsonl"
  jq -e '.errors == 0' <<<"$out" >/dev/null || fail "$label end to end: errors: $out"
  local n
  n=$(jq -r .requests <<<"$out")
  echo "$(jq -r .requests_per_second <<<"$out") $(us_per_req "$c0" "$n") $(us_per_req "$o0" "$n") $(loadgen_us "$n")"
}

if [[ " $WHICH " == *" xks "* ]]; then
  PPORT=$([ -n "${PORT_BASE:-}" ] && echo $((PORT_BASE + 1)) || free_port)
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
  proxy_alone() { # prints "req/s proxy-µs/req loadgen-µs/req"
    local out c0 prof=()
    if [ "$PROFILE" = 1 ] && [ ! -e "$WORK/proxy-alone.perf" ]; then
      perf record -F 499 -g -p "$PROXY_PID" -o "$WORK/proxy-alone.perf" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
      prof=($!)
    fi
    c0=$(cpu "$PROXY_PID")
    out=$(AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET loadgen --endpoint "$XEP$XPATH" --ca-file "$CA" \
      --op xks-encrypt --key-id "$XKEY" --concurrency "$CONCURRENCY" --duration "$DURATION" --size "$SIZE" --json)
    echo "$out" >>"$WORK/runs.jsonl"
    [ ${#prof[@]} = 0 ] || wait "${prof[@]}" || true
    jq -e '.errors == 0' <<<"$out" >/dev/null || fail "proxy alone: errors: $out"
    local n
    n=$(jq -r .requests <<<"$out")
    echo "$(jq -r .requests_per_second <<<"$out") $(us_per_req $(($(cpu "$PROXY_PID") - c0)) "$n") $(loadgen_us "$n")"
  }
  SOFT=$(kms create-key --query KeyMetadata.Arn --output text)
  e=() p=() ek=() eo=() el=() pc=() pl=() sk=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r a b c d < <(e2e "$SOFT" soft)
    sk+=("$b")
    read -r a b c d < <(e2e "$KEY" xks "$PROXY_PID")
    e+=("$a") ek+=("$b") eo+=("$c") el+=("$d")
    read -r a b c < <(proxy_alone)
    p+=("$a") pc+=("$b") pl+=("$c")
    log "xks round $r: default key: keyhold ${sk[-1]} µs/req; XKS key: through keyhold $(printf %.0f "${e[-1]}") req/s (CPU µs/req: keyhold ${ek[-1]}, proxy ${eo[-1]}, load generator ${el[-1]}), proxy alone $(printf %.0f "${p[-1]}") req/s (CPU µs/req: proxy ${pc[-1]}, load generator ${pl[-1]})"
  done
  em=$(printf '%s\n' "${e[@]}" | median)
  pm=$(printf '%s\n' "${p[@]}" | median)
  echo "xks: Encrypt through keyhold $(printf %.0f "$em") req/s, xks-proxy alone $(printf %.0f "$pm") req/s: $(awk -v a="$em" -v b="$pm" 'BEGIN {printf "%.2f", a/b}')x (target >= 0.5x); CPU µs/req medians: keyhold $(printf '%s\n' "${ek[@]}" | median), proxy behind keyhold $(printf '%s\n' "${eo[@]}" | median), load generator $(printf '%s\n' "${el[@]}" | median); proxy alone $(printf '%s\n' "${pc[@]}" | median), its load generator $(printf '%s\n' "${pl[@]}" | median); keyhold with a default key $(printf '%s\n' "${sk[@]}" | median)"
  kill "$KEYHOLD_PID" "$PROXY_PID"; wait "$KEYHOLD_PID" "$PROXY_PID" 2>/dev/null || true
  KEYHOLD_PID="" PROXY_PID=""
  rm -rf "$DATA" "$DATA.log"
fi

if [[ " $WHICH " == *" cloudhsm "* ]]; then
  # The cluster set-up of e2e/cloudhsm.sh: the customer's CA, a cluster
  # with two HSMs in two availability zones (KMS's rule), its CSR signed, initialized, activated, kmsuser created;
  # then a custom key store, connected, and a key in it.
  start_keyhold "$DATA" "$PORT"
  hsm2() { aws --endpoint-url "$EP" cloudhsmv2 "$@"; }
  owner() { "$BIN" hsm "$@" --data-dir "$DATA"; }
  CO_PW=$(openssl rand -hex 8)
  KMSUSER_PW=$(openssl rand -hex 8)
  openssl genrsa -out "$WORK/ca.key" 2048 2>/dev/null
  openssl req -new -x509 -days 365 -key "$WORK/ca.key" -out "$WORK/ca.crt" -subj "/CN=bench customer CA" 2>/dev/null
  mapfile -t SUBNETS < <(owner subnets)
  read -r SUBNET_A AZ_A <<<"${SUBNETS[0]}"
  read -r SUBNET_B AZ_B <<<"${SUBNETS[1]}"
  CLUSTER=$(hsm2 create-cluster --hsm-type hsm1.medium --subnet-ids "$SUBNET_A" "$SUBNET_B" --query Cluster.ClusterId --output text)
  cstate() { hsm2 describe-clusters --filters "clusterIds=$CLUSTER" --query 'Clusters[0].State' --output text; }
  for _ in $(seq 1 150); do [ "$(cstate)" = UNINITIALIZED ] && break; sleep 0.2; done
  hsm2 create-hsm --cluster-id "$CLUSTER" --availability-zone "$AZ_A" --query Hsm.HsmId --output text >/dev/null
  hsm2 create-hsm --cluster-id "$CLUSTER" --availability-zone "$AZ_B" --query Hsm.HsmId --output text >/dev/null
  for _ in $(seq 1 150); do
    hsm2 describe-clusters --filters "clusterIds=$CLUSTER" --query 'Clusters[0].Certificates.ClusterCsr' --output text >"$WORK/c.csr"
    grep -q "BEGIN CERTIFICATE REQUEST" "$WORK/c.csr" && break
    sleep 0.2
  done
  openssl x509 -req -days 365 -in "$WORK/c.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -set_serial "0x$(openssl rand -hex 16)" -out "$WORK/c.crt" 2>/dev/null
  hsm2 initialize-cluster --cluster-id "$CLUSTER" --signed-cert "file://$WORK/c.crt" --trust-anchor "file://$WORK/ca.crt" >/dev/null
  for _ in $(seq 1 150); do
    [ "$(hsm2 describe-clusters --filters "clusterIds=$CLUSTER" --query 'length(Clusters[0].Hsms[?State==`ACTIVE`])' --output text)" = 2 ] &&
      [ "$(cstate)" = INITIALIZED ] && break
    sleep 0.2
  done
  owner activate --cluster-id "$CLUSTER" --co-password "$CO_PW" >/dev/null
  owner create-user --cluster-id "$CLUSTER" --type CU --username kmsuser --password "$KMSUSER_PW" --co-password "$CO_PW" >/dev/null
  # The raw rate first, while kmsuser's password is ours (Connect rotates it).
  raw=() rawc=()
  for r in $(seq 1 "$ROUNDS"); do
    out=$(owner pkcs11-bench --cluster-id "$CLUSTER" --password "$KMSUSER_PW" --duration "$DURATION" --concurrency "$CONCURRENCY")
    echo "$out" >>"$WORK/pkcs11-bench.txt"
    raw+=("$(grep -oE '[0-9.]+ (ops|encrypts)/s' <<<"$out" | head -1 | cut -d' ' -f1)")
    rawc+=("$(grep -oE '[0-9.]+ CPU µs/op' <<<"$out" | head -1 | cut -d' ' -f1 || true)")
    log "cloudhsm pkcs11-bench round $r: ${raw[-1]} encrypts/s ($(tr '\n' ' ' <<<"$out"))"
  done
  KS=$(kms create-custom-key-store --custom-key-store-name BenchCloudHSM --cloud-hsm-cluster-id "$CLUSTER" \
    --key-store-password "$KMSUSER_PW" --trust-anchor-certificate "file://$WORK/ca.crt" --query CustomKeyStoreId --output text)
  kms connect-custom-key-store --custom-key-store-id "$KS"
  wait_connected "$KS"
  KEY=$(kms create-key --origin AWS_CLOUDHSM --custom-key-store-id "$KS" --query KeyMetadata.Arn --output text)
  SOFT=$(kms create-key --query KeyMetadata.Arn --output text)
  DAEMONS=$(pgrep -P "$KEYHOLD_PID" -d' ' -f "hsm-daemon" || true)
  e=() ek=() eo=() el=() sk=() sr=() sl=()
  for r in $(seq 1 "$ROUNDS"); do
    read -r a b c d < <(e2e "$SOFT" soft-cloudhsm)
    sk+=("$b") sr+=("$a") sl+=("$d")
    # shellcheck disable=SC2086 # a list of pids
    read -r a b c d < <(e2e "$KEY" cloudhsm $DAEMONS)
    e+=("$a") ek+=("$b") eo+=("$c") el+=("$d")
    log "cloudhsm round $r: default key: $(printf %.0f "${sr[-1]}") req/s (CPU µs/req: keyhold ${sk[-1]}, load generator ${sl[-1]}); CloudHSM key: through keyhold $(printf %.0f "${e[-1]}") req/s (CPU µs/req: keyhold ${ek[-1]}, HSM daemons ${eo[-1]}, load generator ${el[-1]})"
  done
  em=$(printf '%s\n' "${e[@]}" | median)
  rm_=$(printf '%s\n' "${raw[@]}" | median)
  rc=$(printf '%s\n' "${rawc[@]}" | median)
  ekm=$(printf '%s\n' "${ek[@]}" | median) eom=$(printf '%s\n' "${eo[@]}" | median) elm=$(printf '%s\n' "${el[@]}" | median)
  echo "cloudhsm: Encrypt through keyhold $(printf %.0f "$em") req/s, pkcs11-bench $(printf %.0f "$rm_") encrypts/s: $(awk -v a="$em" -v b="$rm_" 'BEGIN {printf "%.2f", a/b}')x (target >= 0.5x); CPU µs/req medians: keyhold $ekm, HSM daemons $eom, load generator $elm, pkcs11-bench $rc; keyhold with a default key $(printf '%s\n' "${sk[@]}" | median) µs/req, $(printf '%s\n' "${sr[@]}" | median | xargs printf %.0f) req/s (no HSM: the ceiling of this machine)"
  # When both sides are CPU-bound on the same cores, the ratio cannot
  # exceed the raw CPU per encrypt over everything one request through
  # keyhold costs (load generator + keyhold + HSM daemons).
  echo "cloudhsm: CPU per encrypt: pkcs11-bench $rc µs, through keyhold $(awk -v a="$ekm" -v b="$eom" -v c="$elm" 'BEGIN {print a + b + c}') µs (keyhold $ekm + HSM daemons $eom + load generator $elm): CPU-bound ceiling $(awk -v r="$rc" -v a="$ekm" -v b="$eom" -v c="$elm" 'BEGIN {printf "%.2f", r / (a + b + c)}')x"
fi
[ "$PROFILE" = 1 ] && log "profiles and runs in $WORK"
true
