#!/usr/bin/env bash
# End to end: an external key store (EXTERNAL_KEY_STORE) with the aws CLI.
# `keyhold xks-proxy init` makes a proxy over a SoftHSM2 token, `keyhold
# xks-proxy` serves it, `keyhold serve --xks-ca-file` trusts its CA; then the
# seed's create-custom-key-store example 2 (public endpoint) with the CLI v1
# (cli_follow_urlparam = false) and v2 if installed, connect, create-key
# with an XksKeyId, encrypt/decrypt/generate-data-key, a proxy outage and
# recovery, credential rotation, and one curl --aws-sigv4 call to the proxy.
# With KEYHOLD_E2E_BENCH=1 it also measures Encrypt end to end and the proxy alone.
# Usage: e2e/xks.sh PATH_TO_KEYHOLD_BINARY
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

if ! command -v softhsm2-util >/dev/null; then
  echo "e2e xks: SKIP: softhsm2-util not installed (apt-get install softhsm2)"
  exit 0
fi

WORK=$(mktemp -d)
PROXY_PID=""
cleanup() {
  kill -9 ${KEYHOLD_PID:-} ${PROXY_PID:-} 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PPORT=$(free_port)
"$BIN" xks-proxy init --dir "$WORK/proxy" --addr "127.0.0.1:$PPORT" --prefix /example-prefix >"$WORK/init.json"
XEP=$(jq -r .XksProxyUriEndpoint "$WORK/init.json")
XPATH=$(jq -r .XksProxyUriPath "$WORK/init.json")
AKID=$(jq -r .XksProxyAuthenticationCredential.AccessKeyId "$WORK/init.json")
SECRET=$(jq -r .XksProxyAuthenticationCredential.RawSecretAccessKey "$WORK/init.json")
XKEY=$(jq -r .XksKeyId "$WORK/init.json")
PCFG=$(jq -r .ConfigFile "$WORK/init.json")
CA=$(jq -r .CAFile "$WORK/init.json")
# init writes two credentials per prefix: the second is the rotation spare.
AKID2=$(jq -r '.keyStores[0].credentials[1].accessKeyId' "$PCFG")
SECRET2=$(jq -r '.keyStores[0].credentials[1].secretAccessKey' "$PCFG")

start_proxy() {
  "$BIN" xks-proxy --config "$PCFG" 2>>"$WORK/proxy.log" &
  PROXY_PID=$!
  for _ in $(seq 1 600); do
    if curl -fsS --cacert "$CA" "$XEP/ping" >/dev/null 2>&1; then return 0; fi
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$WORK/proxy.log" >&2; fail "xks-proxy exited during start"; }
    sleep 0.1
  done
  fail "xks-proxy did not answer /ping"
}
stop_proxy() {
  kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""
}
start_proxy

PORT=$(free_port)
DATA=$WORK/data
KEYHOLD_XKS_CA_FILE=$CA start_keyhold "$DATA" "$PORT"
# CLI v1 would fetch https:// parameter values without cli_follow_urlparam = false.
printf '[default]\ncli_follow_urlparam = false\n' >"$WORK/aws-config"
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=$WORK/aws-config AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
EP=http://127.0.0.1:$PORT
kms() { aws --endpoint-url "$EP" kms "$@"; }

echo "== aws CLI v1: $(aws --version 2>&1)"
# The seed's example 2, with this proxy's endpoint, path and credential.
CKS=$(kms create-custom-key-store \
    --custom-key-store-name ExamplePublicEndpointXKS \
    --custom-key-store-type EXTERNAL_KEY_STORE \
    --xks-proxy-connectivity PUBLIC_ENDPOINT \
    --xks-proxy-uri-endpoint "$XEP" \
    --xks-proxy-uri-path "$XPATH" \
    --xks-proxy-authentication-credential "AccessKeyId=$AKID, RawSecretAccessKey=$SECRET" \
    --query CustomKeyStoreId --output text)
[[ $CKS == cks-* ]] || fail "create-custom-key-store: $CKS"
kms describe-custom-key-stores --custom-key-store-id "$CKS" >"$WORK/cks.json"
grep -q "$SECRET" "$WORK/cks.json" && fail "the secret access key was returned"
[ "$(jq -r '.CustomKeyStores[0].ConnectionState' "$WORK/cks.json")" = DISCONNECTED ] || fail "new store is not DISCONNECTED"
[ "$(jq -r '.CustomKeyStores[0].XksProxyConfiguration.UriPath' "$WORK/cks.json")" = "$XPATH" ] || fail "UriPath"

kms connect-custom-key-store --custom-key-store-id "$CKS"
state=""
for _ in $(seq 1 100); do
  state=$(kms describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].ConnectionState' --output text)
  [ "$state" = CONNECTING ] || break
  sleep 0.1
done
[ "$state" = CONNECTED ] || fail "store state $state, want CONNECTED"

KEY=$(kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$CKS" --xks-key-id "$XKEY" \
  --description "e2e xks" --query KeyMetadata.Arn --output text)
[ "$(kms describe-key --key-id "$KEY" --query KeyMetadata.XksKeyConfiguration.Id --output text)" = "$XKEY" ] || fail "XksKeyConfiguration"
expect_error XksKeyAlreadyInUseException kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$CKS" --xks-key-id "$XKEY"
expect_error XksKeyNotFoundException kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$CKS" --xks-key-id no-such-key

head -c 4096 /dev/urandom >"$WORK/plain.bin"
roundtrip() {
  kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin" --encryption-context app=e2e \
    --query CiphertextBlob --output text | base64 -d >"$WORK/cipher.bin"
  kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context app=e2e \
    --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "$1: round trip differs"
}
roundtrip "first"
expect_error InvalidCiphertextException kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context app=other
DK=$(kms generate-data-key --key-id "$KEY" --key-spec AES_256 --output json)
jq -r .CiphertextBlob <<<"$DK" | base64 -d >"$WORK/dk.bin"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/dk.bin" --query Plaintext --output text)" = "$(jq -r .Plaintext <<<"$DK")" ] || fail "data key"
echo "aws CLI v1: ok"

if [ "${KEYHOLD_E2E_BENCH:-}" = 1 ]; then
  # The issue's measurement, in one run: Encrypt through the XKS key end to
  # end (keyhold -> proxy -> SoftHSM2), then the proxy alone.
  echo "== keyhold bench: end to end (XKS key), then the proxy alone"
  "$BIN" bench --endpoint "$EP" --credentials-file "$DATA/credentials" --op encrypt --key-id "$KEY" \
    --concurrency 16 --duration 10s --size 32
  AWS_ACCESS_KEY_ID=$AKID AWS_SECRET_ACCESS_KEY=$SECRET "$BIN" bench --endpoint "$XEP$XPATH" --ca-file "$CA" \
    --op xks-encrypt --key-id "$XKEY" --concurrency 16 --duration 10s --size 32
fi

echo "== proxy outage and recovery"
stop_proxy
expect_error KMSInvalidStateException kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin"
expect_error KMSInvalidStateException kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context app=e2e
[ "$(kms describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].ConnectionState' --output text)" = CONNECTED ] || fail "state during the outage"
start_proxy
roundtrip "after the proxy restart"
echo "outage: ok"

echo "== credential rotation"
kms update-custom-key-store --custom-key-store-id "$CKS" \
  --xks-proxy-authentication-credential "AccessKeyId=$AKID2, RawSecretAccessKey=$SECRET2"
[ "$(kms describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].XksProxyConfiguration.AccessKeyId' --output text)" = "$AKID2" ] || fail "rotated AccessKeyId"
roundtrip "after rotation"
expect_error XksProxyIncorrectAuthenticationCredentialException kms update-custom-key-store --custom-key-store-id "$CKS" \
  --xks-proxy-authentication-credential "AccessKeyId=$AKID2, RawSecretAccessKey=$(head -c 32 /dev/urandom | base64)"
expect_error XksProxyUriInUseException kms create-custom-key-store --custom-key-store-name Again \
  --custom-key-store-type EXTERNAL_KEY_STORE --xks-proxy-connectivity PUBLIC_ENDPOINT \
  --xks-proxy-uri-endpoint "$XEP" --xks-proxy-uri-path "$XPATH" \
  --xks-proxy-authentication-credential "AccessKeyId=$AKID, RawSecretAccessKey=$SECRET"
echo "rotation: ok"

echo "== kill -9 keyhold, restart: the store reconnects with the rotated credential"
cp "$WORK/cipher.bin" "$WORK/before-kill.bin"
kill -9 "$KEYHOLD_PID"; wait "$KEYHOLD_PID" 2>/dev/null || true
KEYHOLD_XKS_CA_FILE=$CA start_keyhold "$DATA" "$PORT"
state=""
for _ in $(seq 1 100); do
  state=$(kms describe-custom-key-stores --custom-key-store-id "$CKS" --query 'CustomKeyStores[0].ConnectionState' --output text)
  [ "$state" = CONNECTED ] && break
  sleep 0.1
done
[ "$state" = CONNECTED ] || fail "after restart the store is $state, want CONNECTED"
kms decrypt --ciphertext-blob "fileb://$WORK/before-kill.bin" --encryption-context app=e2e \
  --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "ciphertext from before kill -9"
echo "restart: ok"

if [ -x /usr/bin/aws ]; then
  echo "== aws CLI v2: $(/usr/bin/aws --version 2>&1)"
  v2() { /usr/bin/aws --endpoint-url "$EP" kms "$@"; }
  expect_error XksProxyUriInUseException v2 create-custom-key-store --custom-key-store-name ExamplePublicEndpointXKS2 \
    --custom-key-store-type EXTERNAL_KEY_STORE --xks-proxy-connectivity PUBLIC_ENDPOINT \
    --xks-proxy-uri-endpoint "$XEP" --xks-proxy-uri-path "$XPATH" \
    --xks-proxy-authentication-credential "AccessKeyId=$AKID, RawSecretAccessKey=$SECRET"
  [ "$(v2 describe-custom-key-stores --custom-key-store-name ExamplePublicEndpointXKS --query 'CustomKeyStores[0].CustomKeyStoreType' --output text)" = EXTERNAL_KEY_STORE ] || fail "v2 describe"
  v2 encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin" --query CiphertextBlob --output text | base64 -d >"$WORK/cipher2.bin"
  v2 decrypt --ciphertext-blob "fileb://$WORK/cipher2.bin" --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "CLI v2 round trip"
  echo "aws CLI v2: ok"
fi

echo "== curl --aws-sigv4 against the proxy"
out=$(curl -sS --cacert "$CA" --aws-sigv4 "aws:amz:us-east-1:kms-xks-proxy" --user "$AKID2:$SECRET2" \
  -H "Content-Type: application/json" -d '{"requestMetadata":{"kmsRequestId":"e2e-xks","kmsOperation":"KmsHealthCheck"}}' \
  -w '\n%{http_code}' "$XEP$XPATH/health")
[ "$(tail -1 <<<"$out")" = 200 ] || fail "curl health: $out"
jq -e '.xksProxyFleetSize >= 1' <<<"$(head -1 <<<"$out")" >/dev/null || fail "curl health body: $out"
echo "curl: ok"

echo "== the data directory holds no JSON state file (at ${SECONDS}s)"
# VPC endpoint services go to keyhold's store too, written by this second
# process while the server runs.
"$BIN" vpce register --data-dir "$DATA" --service-name com.amazonaws.vpce.us-east-1.vpce-svc-0e2e0e2e0e2e \
  --endpoint "$XEP" --private-dns-name xks.example.internal >/dev/null
"$BIN" vpce list --data-dir "$DATA" | jq -e 'length == 1 and .[0].serviceName == "com.amazonaws.vpce.us-east-1.vpce-svc-0e2e0e2e0e2e"' >/dev/null \
  || fail "vpce list does not show the registered service"
files=$(find "$DATA" -name '*.json' -o -name '*.json.*')
[ -z "$files" ] || fail "JSON state files in the data directory: $files"
echo "no JSON state file: ok"

echo "e2e xks: 1 passed, 0 failed"
