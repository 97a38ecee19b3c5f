#!/usr/bin/env bash
# End-to-end check of `keyhold xks-proxy` (the proxy half): init a proxy in a
# temp dir (SoftHSM2 token, TLS certificate, credentials), start it, and call
# it with curl's own SigV4 signer over TLS: health, encrypt, decrypt, a 405 on
# GET, /ping, and a rejected bad signature. Stops the proxy on exit.
#
# Needs: go (or KEYHOLD=/path/to/keyhold), softhsm2, curl >= 7.75, jq.
# Usage: scripts/xks-e2e.sh
set -euo pipefail

cd "$(dirname "$0")/.."
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "xks-e2e: $tool is required" >&2; exit 2; }
done
if [[ ! -e /usr/lib/softhsm/libsofthsm2.so ]]; then
  echo "xks-e2e: SKIP: SoftHSM2 not installed (apt-get install softhsm2)" >&2
  exit 0
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

KEYHOLD=${KEYHOLD:-}
if [[ -z "$KEYHOLD" ]]; then
  go build -o "$work/keyhold" ./cmd/keyhold
  KEYHOLD="$work/keyhold"
fi

# A free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

"$KEYHOLD" xks-proxy init --dir "$work/proxy" --addr "127.0.0.1:$port" --prefix /e2e >"$work/init.json"
endpoint=$(jq -r .XksProxyUriEndpoint "$work/init.json")
path=$(jq -r .XksProxyUriPath "$work/init.json")
akid=$(jq -r .XksProxyAuthenticationCredential.AccessKeyId "$work/init.json")
secret=$(jq -r .XksProxyAuthenticationCredential.RawSecretAccessKey "$work/init.json")
keyid=$(jq -r .XksKeyId "$work/init.json")
cfg=$(jq -r .ConfigFile "$work/init.json")
ca=$(jq -r .CAFile "$work/init.json")
[[ "$(stat -c %a "$cfg")" == 600 ]] || { echo "xks-e2e: config file is not 0600" >&2; exit 1; }

"$KEYHOLD" xks-proxy --config "$cfg" 2>"$work/proxy.log" &
pid=$!
for _ in $(seq 50); do
  curl -sf --cacert "$ca" "$endpoint/ping" >/dev/null 2>&1 && break
  sleep 0.1
done

fail() { echo "xks-e2e: FAIL: $*" >&2; echo "--- proxy log" >&2; tail -20 "$work/proxy.log" >&2; exit 1; }

# call PATH BODY -> prints "BODY\nSTATUS"
call() {
  curl -sS --cacert "$ca" --aws-sigv4 "aws:amz:us-east-1:kms-xks-proxy" --user "$1" \
    -H "Content-Type: application/json" -d "$3" -w '\n%{http_code}' "$endpoint$path$2"
}
md='{"awsPrincipalArn":"arn:aws:iam::111122223333:user/e2e","kmsKeyArn":"arn:aws:kms:us-east-1:111122223333:key/e2e","kmsOperation":"Encrypt","kmsRequestId":"e2e-1"}'

out=$(call "$akid:$secret" /health '{"requestMetadata":{"kmsRequestId":"e2e-0","kmsOperation":"KmsHealthCheck"}}')
[[ "$(tail -1 <<<"$out")" == 200 ]] || fail "health: $out"
jq -e '.ekmFleetDetails[0].healthStatus == "ACTIVE"' <<<"$(head -1 <<<"$out")" >/dev/null || fail "health not ACTIVE: $out"
echo "xks-e2e: health ACTIVE"

pt=$(printf 'hello from xks-e2e' | base64)
out=$(call "$akid:$secret" "/keys/$keyid/encrypt" "{\"requestMetadata\":$md,\"plaintext\":\"$pt\",\"encryptionAlgorithm\":\"AES_GCM\",\"ciphertextDataIntegrityValueAlgorithm\":\"SHA_256\"}")
[[ "$(tail -1 <<<"$out")" == 200 ]] || fail "encrypt: $out"
enc=$(head -1 <<<"$out")
jq -e 'has("ciphertextDataIntegrityValue")' <<<"$enc" >/dev/null || fail "no CDIV: $enc"
echo "xks-e2e: encrypt ok"

dec_body=$(jq -c --argjson md "$md" '{requestMetadata:($md|.kmsOperation="Decrypt"), ciphertext, initializationVector, authenticationTag, encryptionAlgorithm:"AES_GCM"}' <<<"$enc")
out=$(call "$akid:$secret" "/keys/$keyid/decrypt" "$dec_body")
[[ "$(tail -1 <<<"$out")" == 200 ]] || fail "decrypt: $out"
[[ "$(head -1 <<<"$out" | jq -r .plaintext | base64 -d)" == "hello from xks-e2e" ]] || fail "decrypt returned other plaintext"
echo "xks-e2e: decrypt ok"

code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$endpoint$path/health")
[[ "$code" == 405 ]] || fail "GET on an API path answered $code, want 405"
echo "xks-e2e: GET answers 405"

out=$(call "$akid:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" /health '{"requestMetadata":{"kmsRequestId":"e2e-2","kmsOperation":"KmsHealthCheck"}}')
[[ "$(tail -1 <<<"$out")" == 401 ]] || fail "bad signature: $out"
echo "xks-e2e: bad signature answers 401"

grep -q '"kmsRequestId":"e2e-1"' "$work/proxy.log" || fail "access log lacks kmsRequestId"
if grep -q "$secret" "$work/proxy.log"; then fail "the log contains the secret"; fi
echo "xks-e2e: PASS"
