#!/usr/bin/env bash
# End to end: a CloudHSM key store made the way AWS documents it (seeds 002,
# 003, 004 and 001), with the aws CLI v1 (and v2 for the KMS custom key store
# commands when /usr/bin/aws exists), openssl as the customer's CA and
# `keyhold hsm` as the crypto officer's tools, against a built `keyhold serve`
# with SoftHSM2 underneath. Then an HSM failure (kill -9 of one HSM process),
# disconnect/reconnect, and the deletion rules.
# Usage: e2e/cloudhsm.sh PATH_TO_KEYHOLD_BINARY
# With KEYHOLD_E2E_BENCH=1 it also measures `keyhold bench` against the
# CloudHSM key and `keyhold hsm pkcs11-bench` on the same token.
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

if ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "e2e cloudhsm: skipped (softhsm2-util not found; apt-get install softhsm2 to run it)"
  exit 0
fi

WORK=$(mktemp -d)
cleanup() {
  if [ -n "${CLUSTER2_JOB:-}" ]; then
    for p in $(pgrep -P "$CLUSTER2_JOB" 2>/dev/null || true); do kill "$p" 2>/dev/null || true; done
    kill "$CLUSTER2_JOB" 2>/dev/null || true
  fi
  # The HSM daemons die with keyhold (Pdeathsig); kill the ones we can
  # see by their parent too, by process id only.
  if [ -n "${KEYHOLD_PID:-}" ]; then
    for p in $(pgrep -P "$KEYHOLD_PID" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
    kill -9 "$KEYHOLD_PID" 2>/dev/null || true
    wait "$KEYHOLD_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(free_port)
DATA=$WORK/data
# The server runs with a relative --data-dir from $WORK; the owner's
# commands below run from another directory with another relative path to
# the same data directory. Every path keyhold stores is absolute, so they
# find the same tokens.
mkdir -p "$WORK/owner-cwd"
serve_relative() { pushd "$WORK" >/dev/null; start_keyhold data "$PORT"; popd >/dev/null; }
serve_relative
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
EP=http://127.0.0.1:$PORT

hsm2() { aws --endpoint-url "$EP" cloudhsmv2 "$@"; }
kms() { aws --endpoint-url "$EP" kms "$@"; }
# kms2 is the CLI v2 when installed (it honours only --endpoint-url), else v1.
if [ -x /usr/bin/aws ]; then
  kms2() { /usr/bin/aws --endpoint-url "$EP" kms "$@"; }
  V2="aws CLI v2 ($(/usr/bin/aws --version 2>&1 | cut -d' ' -f1))"
else
  kms2() { kms "$@"; }
  V2="aws CLI v1 (no /usr/bin/aws)"
fi
owner() { (cd "$WORK/owner-cwd" && "$BIN" hsm "$@" --data-dir ../data); }
# api SIGNING_NAME TARGET JSON: one signed JSON 1.1 call with curl, for the
# polls and checks (each aws CLI run costs over a second of Python start-up;
# the steps themselves use the CLI).
AK=$(awk -F' *= *' '$1=="aws_access_key_id"{print $2}' "$DATA/credentials")
SK=$(awk -F' *= *' '$1=="aws_secret_access_key"{print $2}' "$DATA/credentials")
api() {
  curl -sS --aws-sigv4 "aws:amz:us-east-1:$1" --user "$AK:$SK" -H "X-Amz-Target: $2" \
    -H 'Content-Type: application/x-amz-json-1.1' --data-binary "$3" "$EP/"
}
describe_cluster() { api cloudhsm BaldrApiService.DescribeClusters "{\"Filters\":{\"clusterIds\":[\"$1\"]}}" | jq -c '.Clusters[0]'; }

# Secrets: random, never echoed. They appear on command lines only.
pw() { openssl rand -hex 8; }
CO_PW=$(pw)
KMSUSER_PW=$(pw)

# expect_secret_error CODE CMD...: expect_error for commands that carry a
# password; on failure it names the operation, never the arguments.
expect_secret_error() {
  local code=$1; shift
  local out
  if out=$("$@" 2>&1); then fail "expected $code, $1 $2 succeeded"; fi
  grep -q "$code" <<<"$out" || fail "expected $code from $1 $2, got: $out"
}

# wait_for WHAT TIMEOUT_S CMD...: polls CMD (a check that prints nothing)
# until it succeeds. The bounds are generous (the suite runs the scripts
# alongside the Go tests on 2 cores, and each poll is an aws CLI call): they
# only stop a script that would otherwise wait forever.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}
cluster_state_is() { [ "$(describe_cluster "$1" | jq -r .State)" = "$2" ]; }
csr_ready() { describe_cluster "$1" | jq -e '.Certificates.ClusterCsr // "" | contains("BEGIN CERTIFICATE REQUEST")' >/dev/null; }
hsms_active() { [ "$(describe_cluster "$1" | jq '[.Hsms[]? | select(.State == "ACTIVE")] | length')" = "$2" ]; }

echo "== the customer's CA (openssl) (at ${SECONDS}s)"
openssl genrsa -out "$WORK/customerCA.key" 2048 2>/dev/null
openssl req -new -x509 -days 3652 -key "$WORK/customerCA.key" -out "$WORK/customerCA.crt" \
  -subj "/CN=keyhold e2e customer CA" 2>/dev/null
[ "$(openssl x509 -in "$WORK/customerCA.crt" -noout -subject)" = "$(openssl x509 -in "$WORK/customerCA.crt" -noout -issuer | sed 's/^issuer/subject/')" ] \
  || fail "customerCA.crt is not self-signed"

# Two subnets in two availability zones of keyhold's default network.
mapfile -t SUBNETS < <(owner subnets)
[ "${#SUBNETS[@]}" -ge 2 ] || fail "keyhold hsm subnets listed ${#SUBNETS[@]} subnets"
read -r SUBNET_A AZ_A <<<"${SUBNETS[0]}"
read -r SUBNET_B AZ_B <<<"${SUBNETS[1]}"
[ "$AZ_A" != "$AZ_B" ] || fail "the first two subnets share an AZ"

# make_cluster NAME WITH_KMSUSER: create, add two HSMs in two AZs, sign the
# CSR with customerCA, initialize, activate (and create kmsuser); prints
# the cluster ID on fd 3.
make_cluster() {
  local name=$1 with_user=$2 id
  id=$(hsm2 create-cluster --hsm-type hsm1.medium --subnet-ids "$SUBNET_A" "$SUBNET_B" \
    --tag-list "Key=Name,Value=$name" --query Cluster.ClusterId --output text)
  [[ $id =~ ^cluster-[2-7a-zA-Z]{11,16}$ ]] || fail "create-cluster returned '$id'"
  wait_for "$id UNINITIALIZED" 300 cluster_state_is "$id" UNINITIALIZED
  hsm2 create-hsm --cluster-id "$id" --availability-zone "$AZ_A" --query Hsm.HsmId --output text >/dev/null
  hsm2 create-hsm --cluster-id "$id" --availability-zone "$AZ_B" --query Hsm.HsmId --output text >/dev/null
  wait_for "$id CSR" 300 csr_ready "$id"
  hsm2 describe-clusters --filters "clusterIds=$id" --query 'Clusters[0].Certificates.ClusterCsr' --output text > "$WORK/$id.csr"
  openssl req -in "$WORK/$id.csr" -noout -verify 2>/dev/null || fail "the cluster CSR does not verify"
  openssl x509 -req -days 3652 -in "$WORK/$id.csr" -CA "$WORK/customerCA.crt" -CAkey "$WORK/customerCA.key" \
    -set_serial "0x$(openssl rand -hex 16)" -out "$WORK/$id.crt" 2>/dev/null
  hsm2 initialize-cluster --cluster-id "$id" --signed-cert "file://$WORK/$id.crt" \
    --trust-anchor "file://$WORK/customerCA.crt" --query State --output text >/dev/null
  wait_for "$id INITIALIZED" 300 cluster_state_is "$id" INITIALIZED
  wait_for "$id: 2 ACTIVE HSMs" 300 hsms_active "$id" 2
  owner activate --cluster-id "$id" --co-password "$CO_PW" >/dev/null
  [ "$(hsm2 describe-clusters --filters "clusterIds=$id" --query 'Clusters[0].State' --output text)" = ACTIVE ] \
    || fail "$id is not ACTIVE after activate"
  if [ "$with_user" = yes ]; then
    owner create-user --cluster-id "$id" --type CU --username kmsuser --password "$KMSUSER_PW" --co-password "$CO_PW" >/dev/null
  fi
  echo "$id" >&3
}

echo "== CloudHSM cluster (aws cloudhsmv2 + keyhold hsm) (at ${SECONDS}s)"
# A second cluster, for a store that never has keys (see "deletion rules"),
# is made in the background meanwhile.
( make_cluster SecondCluster no 3>"$WORK/cluster2.id" >/dev/null ) 2>"$WORK/cluster2.err" &
CLUSTER2_JOB=$!
CLUSTER=$(make_cluster ExampleCluster yes 3>&1 >/dev/null)
hsm2 describe-clusters --filters "clusterIds=$CLUSTER" --query 'Clusters[0].Certificates.ClusterCertificate' --output text > "$WORK/cluster-cert.pem"
openssl verify -CAfile "$WORK/customerCA.crt" "$WORK/cluster-cert.pem" >/dev/null || fail "the cluster certificate does not chain to customerCA.crt"
echo "cluster $CLUSTER: ACTIVE, 2 HSMs in $AZ_A and $AZ_B, kmsuser created"

if [ "${KEYHOLD_E2E_BENCH:-}" = 1 ]; then
  # Before Connect, while the kmsuser password is still the one we set (KMS
  # rotates it on connect).
  echo "== pkcs11-bench (same token)"
  owner pkcs11-bench --cluster-id "$CLUSTER" --password "$KMSUSER_PW" --duration 10s --concurrency 2 | tee "$WORK/pkcs11-bench.txt"
fi

echo "== custom key store (aws CLI v1) (at ${SECONDS}s)"
KS=$(kms create-custom-key-store --custom-key-store-name ExampleKeyStore --cloud-hsm-cluster-id "$CLUSTER" \
  --key-store-password "$KMSUSER_PW" --trust-anchor-certificate "file://$WORK/customerCA.crt" \
  --query CustomKeyStoreId --output text)
[[ $KS =~ ^cks-[0-9a-f]{17}$ ]] || fail "create-custom-key-store returned '$KS'"
desc_ks() { api kms TrentService.DescribeCustomKeyStores "{\"CustomKeyStoreId\":\"$1\"}"; }
key_state() { api kms TrentService.DescribeKey "{\"KeyId\":\"$1\"}" | jq -r .KeyMetadata.KeyState; }
ks_state() { desc_ks "$1" | jq -r '.CustomKeyStores[0].ConnectionState'; }
[ "$(ks_state "$KS")" = DISCONNECTED ] || fail "a new store is not DISCONNECTED"
# Creating it again with every property equal is idempotent (the store is
# still DISCONNECTED): the same ID comes back.
[ "$(kms create-custom-key-store --custom-key-store-name ExampleKeyStore --cloud-hsm-cluster-id "$CLUSTER" \
  --key-store-password "$KMSUSER_PW" --trust-anchor-certificate "file://$WORK/customerCA.crt" \
  --query CustomKeyStoreId --output text)" = "$KS" ] || fail "an identical create-custom-key-store did not return $KS"
expect_error CustomKeyStoreInvalidStateException kms create-key --origin AWS_CLOUDHSM --custom-key-store-id "$KS"

# connected_or_failed KS: true once the store left CONNECTING; FAILED is fatal.
connected() {
  local d st
  d=$(desc_ks "$1")
  st=$(jq -r '.CustomKeyStores[0].ConnectionState' <<<"$d")
  case $st in
    CONNECTED) return 0 ;;
    FAILED) fail "store $1 FAILED to connect: ConnectionErrorCode=$(jq -r '.CustomKeyStores[0].ConnectionErrorCode' <<<"$d")" ;;
    CONNECTING|DISCONNECTED) return 1 ;;
    *) fail "store $1 in unexpected state $st" ;;
  esac
}
kms connect-custom-key-store --custom-key-store-id "$KS"
wait_for "$KS CONNECTED" 300 connected "$KS"
echo "store $KS: CONNECTED"

# KMS rotated kmsuser's password on connect: ours no longer logs in.
if owner pkcs11-bench --cluster-id "$CLUSTER" --password "$KMSUSER_PW" --duration 50ms >/dev/null 2>&1; then
  fail "the original kmsuser password still logs in after Connect (no rotation)"
fi

echo "== a KMS key in the CloudHSM key store (at ${SECONDS}s)"
KEY_JSON=$(kms create-key --origin AWS_CLOUDHSM --custom-key-store-id "$KS" --description "e2e cloudhsm" --output json)
KEY=$(jq -r .KeyMetadata.KeyId <<<"$KEY_JSON")
ARN=$(jq -r .KeyMetadata.Arn <<<"$KEY_JSON")
jq -e --arg ks "$KS" --arg cl "$CLUSTER" '.KeyMetadata | .Origin == "AWS_CLOUDHSM" and .CustomKeyStoreId == $ks
  and .CloudHsmClusterId == $cl and .KeyState == "Enabled" and .KeySpec == "SYMMETRIC_DEFAULT"' <<<"$KEY_JSON" >/dev/null \
  || fail "create-key metadata: $KEY_JSON"
kms describe-key --key-id "$KEY" --output json | jq -e --arg ks "$KS" --arg cl "$CLUSTER" \
  '.KeyMetadata | .Origin == "AWS_CLOUDHSM" and .CustomKeyStoreId == $ks and .CloudHsmClusterId == $cl' >/dev/null \
  || fail "describe-key lacks Origin/CustomKeyStoreId/CloudHsmClusterId"
kms create-alias --alias-name alias/e2e-cloudhsm --target-key-id "$KEY"

head -c 4000 /dev/urandom > "$WORK/plain.bin"
kms encrypt --key-id alias/e2e-cloudhsm --plaintext "fileb://$WORK/plain.bin" --encryption-context purpose=e2e \
  --query CiphertextBlob --output text | base64 -d > "$WORK/cipher.bin"
kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e \
  --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "file round trip through the cluster"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e --query KeyId --output text)" = "$ARN" ] \
  || fail "decrypt names another key"
expect_error InvalidCiphertextException kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=other
DK=$(kms generate-data-key --key-id "$KEY" --key-spec AES_256 --output json)
[ "$(jq -r .Plaintext <<<"$DK" | base64 -d | wc -c)" = 32 ] || fail "data key is not 32 bytes"
jq -r .CiphertextBlob <<<"$DK" | base64 -d > "$WORK/dk.bin"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/dk.bin" --query Plaintext --output text)" = "$(jq -r .Plaintext <<<"$DK")" ] \
  || fail "data key does not decrypt"
[ "$(kms generate-random --number-of-bytes 32 --custom-key-store-id "$KS" --query Plaintext --output text | base64 -d | wc -c)" = 32 ] \
  || fail "generate-random from the cluster"
echo "encrypt/decrypt, generate-data-key, generate-random: ok"

if [ "${KEYHOLD_E2E_BENCH:-}" = 1 ]; then
  echo "== keyhold bench (end to end, CloudHSM key)"
  "$BIN" bench --endpoint "$EP" --credentials-file "$DATA/credentials" --op encrypt --key-id "$ARN" \
    --concurrency 16 --duration 10s --size 32 | tee "$WORK/bench.txt"
fi

echo "== HSM failure: kill -9 one HSM process (at ${SECONDS}s)"
mapfile -t DAEMONS < <(pgrep -P "$KEYHOLD_PID" -f "hsm-daemon .*--token $CLUSTER( |$)" || true)
[ "${#DAEMONS[@]}" = 2 ] || fail "expected 2 HSM daemons of $CLUSTER, found ${#DAEMONS[@]}"
kill -9 "${DAEMONS[0]}"
kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin" --query CiphertextBlob --output text | base64 -d > "$WORK/c1.bin" \
  || fail "encrypt after an HSM died"
kms decrypt --ciphertext-blob "fileb://$WORK/c1.bin" --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" \
  || fail "decrypt after an HSM died"
# Then a second of steady encrypts: none may fail.
"$BIN" bench --endpoint "$EP" --credentials-file "$DATA/credentials" --op encrypt --key-id "$ARN" \
  --concurrency 4 --duration 1s --size 64 --json > "$WORK/after-kill.json"
jq -e '.requests > 0 and .errors == 0' "$WORK/after-kill.json" >/dev/null || fail "encrypts failed after an HSM died: $(cat "$WORK/after-kill.json")"
degraded() { hsms_active "$CLUSTER" 1; }
wait_for "the killed HSM to leave ACTIVE" 300 degraded
[ "$(ks_state "$KS")" = CONNECTED ] || fail "the store left CONNECTED when one of two HSMs died"
echo "one HSM down: $(jq .requests "$WORK/after-kill.json") encrypts in 1 s, 0 errors; store still CONNECTED"

echo "== disconnect (at ${SECONDS}s)"
kms disconnect-custom-key-store --custom-key-store-id "$KS"
disconnected() { [ "$(ks_state "$KS")" = DISCONNECTED ]; }
wait_for "$KS DISCONNECTED" 300 disconnected
[ "$(kms describe-key --key-id "$KEY" --query KeyMetadata.KeyState --output text)" = Unavailable ] || fail "key not Unavailable while disconnected"
expect_error KMSInvalidStateException kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin"
expect_error KMSInvalidStateException kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e
expect_error KMSInvalidStateException kms generate-data-key --key-id "$KEY" --key-spec AES_256
expect_error CustomKeyStoreInvalidStateException kms generate-random --number-of-bytes 8 --custom-key-store-id "$KS"

echo "== reconnect with $V2 (at ${SECONDS}s)"
kms2 connect-custom-key-store --custom-key-store-id "$KS"
wait_for "$KS CONNECTED again" 300 connected "$KS"
[ "$(key_state "$KEY")" = Enabled ] || fail "key not Enabled after reconnect"
kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e \
  --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "old ciphertext after reconnect"
echo "reconnected; the old ciphertext decrypts"

echo "== kill -9 keyhold, restart: the store reconnects by itself (at ${SECONDS}s)"
kill -9 "$KEYHOLD_PID"; wait "$KEYHOLD_PID" 2>/dev/null || true
serve_relative
wait_for "$KS CONNECTED after restart" 300 connected "$KS"
kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e \
  --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "old ciphertext after kill -9 and restart"
kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin" --query KeyId --output text >/dev/null || fail "encrypt after restart"
echo "restarted; the store is CONNECTED again and the old ciphertext decrypts"

# The key store password is never returned, by either CLI, nor logged.
for out in "$(kms describe-custom-key-stores --output json)" "$(kms2 describe-custom-key-stores --output json)" \
           "$(desc_ks "$KS")" "$(api kms TrentService.DescribeKey "{\"KeyId\":\"$KEY\"}")"; do
  if grep -qF -- "$KMSUSER_PW" <<<"$out"; then fail "the key store password appears in a describe output"; fi
  jq -e '[.. | objects | keys[]] | any(test("Password"))' <<<"$out" >/dev/null && fail "a Password member in describe output"
done
if grep -qF -- "$KMSUSER_PW" "$DATA.log"; then fail "the key store password appears in keyhold's log"; fi
if grep -qF -- "$CO_PW" "$DATA.log"; then fail "the crypto officer password appears in keyhold's log"; fi
# Nor is either stored in clear anywhere in the data directory (database,
# audit trail, cluster records, tokens).
if grep -rqaF -- "$KMSUSER_PW" "$DATA"; then fail "the key store password is stored in clear under the data directory"; fi
if grep -rqaF -- "$CO_PW" "$DATA"; then fail "the crypto officer password is stored in clear under the data directory"; fi
kms describe-custom-key-stores --custom-key-store-name ExampleKeyStore --output json | jq -e --arg ks "$KS" --arg cl "$CLUSTER" \
  '.CustomKeyStores | length == 1 and .[0].CustomKeyStoreId == $ks and .[0].CloudHsmClusterId == $cl
   and .[0].CustomKeyStoreType == "AWS_CLOUDHSM" and (.[0].TrustAnchorCertificate | contains("BEGIN CERTIFICATE"))' >/dev/null \
  || fail "describe by name"

echo "== deletion rules (at ${SECONDS}s)"
[ "$(kms schedule-key-deletion --key-id "$KEY" --pending-window-in-days 7 --query KeyState --output text)" = PendingDeletion ] \
  || fail "schedule-key-deletion"
expect_error CustomKeyStoreInvalidStateException kms delete-custom-key-store --custom-key-store-id "$KS"
kms disconnect-custom-key-store --custom-key-store-id "$KS"
wait_for "$KS DISCONNECTED" 300 disconnected
[ "$(key_state "$KEY")" = PendingDeletion ] || fail "PendingDeletion is not kept while disconnected"
expect_error CustomKeyStoreHasCMKsException kms delete-custom-key-store --custom-key-store-id "$KS"
# A key pending deletion keeps the store for at least 7 days (the shortest
# waiting period), so this run cannot see it deleted. The successful delete
# is shown on a second store, on a second cluster, that never had keys
# (created, renamed, deleted without ever connecting), with the CLI v2.
# make_cluster writes the id last, so an id means it succeeded; wait's own
# status can be lost (bash forgets finished jobs after many children, and
# says "not a child of this shell").
wait "$CLUSTER2_JOB" 2>/dev/null || true
[ -s "$WORK/cluster2.id" ] || { cat "$WORK/cluster2.err" >&2; fail "making the second cluster"; }
CLUSTER2=$(cat "$WORK/cluster2.id")
expect_secret_error CloudHsmClusterInUseException kms2 create-custom-key-store --custom-key-store-name Other \
  --cloud-hsm-cluster-id "$CLUSTER" --key-store-password "$KMSUSER_PW" --trust-anchor-certificate "file://$WORK/customerCA.crt"
expect_secret_error CustomKeyStoreNameInUseException kms2 create-custom-key-store --custom-key-store-name ExampleKeyStore \
  --cloud-hsm-cluster-id "$CLUSTER2" --key-store-password "$KMSUSER_PW" --trust-anchor-certificate "file://$WORK/customerCA.crt"
KS2=$(kms2 create-custom-key-store --custom-key-store-name SecondKeyStore --cloud-hsm-cluster-id "$CLUSTER2" \
  --key-store-password "$(pw)" --trust-anchor-certificate "file://$WORK/customerCA.crt" --query CustomKeyStoreId --output text)
kms2 update-custom-key-store --custom-key-store-id "$KS2" --new-custom-key-store-name SecondKeyStoreRenamed
[ "$(kms2 describe-custom-key-stores --custom-key-store-name SecondKeyStoreRenamed --query 'CustomKeyStores[0].CustomKeyStoreId' --output text)" = "$KS2" ] \
  || fail "rename"
kms2 delete-custom-key-store --custom-key-store-id "$KS2"
expect_error CustomKeyStoreNotFoundException kms describe-custom-key-stores --custom-key-store-id "$KS2"
[ "$(ks_state "$KS")" = DISCONNECTED ] || fail "the first store changed"
echo "deletion rules: ok"

# Cluster, HSM, backup and crypto-user records live in keyhold's store: the
# data directory holds tokens, the database, the root key, the credentials
# and the audit trail, and no JSON state file.
files=$(find "$DATA" -name '*.json' -o -name '*.json.*')
[ -z "$files" ] || fail "JSON state files in the data directory: $files"
echo "no JSON state file: ok"

if [ "${KEYHOLD_E2E_BENCH:-}" = 1 ]; then
  echo "== measured"
  cat "$WORK/pkcs11-bench.txt" "$WORK/bench.txt"
fi
echo "e2e cloudhsm: 1 passed, 0 failed"
