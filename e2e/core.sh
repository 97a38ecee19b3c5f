#!/usr/bin/env bash
# End to end: the aws CLI (v1 from Python, v2 if installed) and boto3 against
# a built `keyhold serve`, then kill -9, restart, and check that what was
# acknowledged before the kill still works.
# Usage: e2e/core.sh PATH_TO_KEYHOLD_BINARY
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill -9 ${KEYHOLD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
DATA=$WORK/data
start_keyhold "$DATA" "$PORT"
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
EP=http://127.0.0.1:$PORT
[ "$(stat -c %a "$DATA/credentials")" = 600 ] || fail "credentials file is not 0600"

kms() { aws --endpoint-url "$EP" kms "$@"; }

echo "== aws CLI v1: $(aws --version 2>&1)"
KEY=$(kms create-key --description e2e --query KeyMetadata.KeyId --output text)
kms create-alias --alias-name alias/e2e --target-key-id "$KEY"
[ "$(kms describe-key --key-id alias/e2e --query KeyMetadata.KeyId --output text)" = "$KEY" ] || fail "alias does not resolve"
head -c 3000 /dev/urandom > "$WORK/plain.bin"
kms encrypt --key-id alias/e2e --plaintext "fileb://$WORK/plain.bin" --encryption-context purpose=e2e \
  --query CiphertextBlob --output text | base64 -d > "$WORK/cipher.bin"
kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e \
  --query Plaintext --output text | base64 -d > "$WORK/round.bin"
cmp "$WORK/plain.bin" "$WORK/round.bin" || fail "file round trip differs"
expect_error InvalidCiphertextException kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=other
DK=$(kms generate-data-key --key-id "$KEY" --key-spec AES_256 --output json)
[ "$(jq -r .Plaintext <<<"$DK" | base64 -d | wc -c)" = 32 ] || fail "data key is not 32 bytes"
jq -r .CiphertextBlob <<<"$DK" | base64 -d > "$WORK/dk.bin"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/dk.bin" --query Plaintext --output text)" = "$(jq -r .Plaintext <<<"$DK")" ] || fail "data key decrypt"
DOOMED=$(kms create-key --query KeyMetadata.KeyId --output text)
[ "$(kms schedule-key-deletion --key-id "$DOOMED" --pending-window-in-days 7 --query KeyState --output text)" = PendingDeletion ] || fail "schedule"
expect_error KMSInvalidStateException kms encrypt --key-id "$DOOMED" --plaintext "fileb://$WORK/plain.bin"
kms disable-key --key-id "$KEY"
expect_error DisabledException kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain.bin"
kms enable-key --key-id "$KEY"
expect_error NotFoundException kms describe-key --key-id alias/missing
echo "aws CLI v1: ok"

if [ -x /usr/bin/aws ]; then
  echo "== aws CLI v2: $(/usr/bin/aws --version 2>&1)"
  /usr/bin/aws --endpoint-url "$EP" kms encrypt --key-id alias/e2e --plaintext "fileb://$WORK/plain.bin" \
    --query CiphertextBlob --output text | base64 -d > "$WORK/cipher2.bin"
  /usr/bin/aws --endpoint-url "$EP" kms decrypt --ciphertext-blob "fileb://$WORK/cipher2.bin" \
    --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "CLI v2 round trip"
  echo "aws CLI v2: ok"
fi

echo "== boto3"
EP=$EP KEY=$KEY WORK=$WORK python3 "$(dirname "$0")/core_boto3.py"

echo "== kill -9 and restart"
kill -9 "$KEYHOLD_PID"; wait "$KEYHOLD_PID" 2>/dev/null || true
start_keyhold "$DATA" "$PORT"
[ "$(kms describe-key --key-id alias/e2e --query KeyMetadata.KeyState --output text)" = Enabled ] || fail "key lost after kill -9"
kms decrypt --ciphertext-blob "fileb://$WORK/cipher.bin" --encryption-context purpose=e2e \
  --query Plaintext --output text | base64 -d | cmp - "$WORK/plain.bin" || fail "ciphertext from before kill -9 no longer decrypts"
base64 -d "$WORK/boto3-ct.b64" > "$WORK/boto3-ct.bin"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/boto3-ct.bin" --encryption-context via=boto3 --query Plaintext --output text | base64 -d)" = "from boto3" ] \
  || fail "boto3 ciphertext lost"
[ "$(kms describe-key --key-id "$DOOMED" --query KeyMetadata.KeyState --output text)" = PendingDeletion ] || fail "deletion schedule lost"
[ "$(kms describe-key --key-id "$(cat "$WORK/boto3-key")" --query KeyMetadata.Description --output text)" = "made by boto3" ] || fail "boto3 key lost"
echo "kill -9 restart: ok"

echo "== one server per data directory"
rc=0; out=$(timeout 20 "$BIN" serve --data-dir "$DATA" --addr "127.0.0.1:$(free_port)" 2>&1) || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second keyhold serve on $DATA did not exit at once with an error (rc $rc)"
grep -q "pid $KEYHOLD_PID" <<<"$out" || fail "the second serve's message does not name the holder (pid $KEYHOLD_PID): $out"
echo "second serve refused: $out"

echo "== SIGTERM"
kill -TERM "$KEYHOLD_PID"
rc=0; wait "$KEYHOLD_PID" || rc=$?
[ "$rc" = 0 ] || fail "keyhold exited with $rc on SIGTERM"
grep -q "shutting down" "$DATA.log" || fail "no clean shutdown logged"
KEYHOLD_PID=
echo "SIGTERM: clean exit"
echo "e2e core: 1 passed, 0 failed"
