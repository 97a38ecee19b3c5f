#!/usr/bin/env bash
# End to end: who may do what, with the aws CLI and two accounts' profiles.
# keyhold admin makes a user and a second account; key policies, identity
# policies, a grant and an assumed role decide; then the audit trail must
# hold an event for every call and none of the script's secrets.
# Usage: e2e/authz.sh PATH_TO_KEYHOLD_BINARY
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

WORK=$(mktemp -d)
trap 'kill -9 ${KEYHOLD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
DATA=$WORK/data
start_keyhold "$DATA" "$PORT"
EP=http://127.0.0.1:$PORT
export AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
CREDS=$WORK/credentials
cp "$DATA/credentials" "$CREDS"
export AWS_SHARED_CREDENTIALS_FILE=$CREDS
admin() { local sub=$1; shift; "$BIN" admin "$sub" --endpoint "$EP" --credentials-file "$DATA/credentials" "$@"; }
kms() { aws --endpoint-url "$EP" kms "$@"; }
field() { sed -n "s/^$1: //p"; }
ACCT=$(aws --endpoint-url "$EP" sts get-caller-identity --query Account --output text)

echo "== principals (keyhold admin)"
admin create-user --name app >/dev/null
cat > "$WORK/app-policy.json" <<JSON
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}},
 {"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::$ACCT:role/auditor"}]}
JSON
admin attach-policy --user app --policy-name enc-tenant-a --file "$WORK/app-policy.json"
KEYOUT=$(admin create-access-key --user app)
APP_AK=$(field AccessKey.AccessKeyId <<<"$KEYOUT"); APP_SK=$(field AccessKey.SecretAccessKey <<<"$KEYOUT")
OTHER=$(admin create-account)
B_ACCT=$(field AccountId <<<"$OTHER"); B_AK=$(field AccessKey.AccessKeyId <<<"$OTHER"); B_SK=$(field AccessKey.SecretAccessKey <<<"$OTHER")
[ -n "$APP_SK" ] && [ -n "$B_SK" ] || fail "admin commands did not return key pairs"
printf '[app]\naws_access_key_id = %s\naws_secret_access_key = %s\n[other]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$APP_AK" "$APP_SK" "$B_AK" "$B_SK" >> "$CREDS"
[ "$(aws --endpoint-url "$EP" --profile other sts get-caller-identity --query Account --output text)" = "$B_ACCT" ] || fail "profile other"

echo "== identity policy with an encryption-context condition (profile app)"
KEY=$(kms create-key --query KeyMetadata.Arn --output text)
echo -n "plaintext-for-tenant-a" > "$WORK/pt-a"
kms --profile app encrypt --key-id "$KEY" --plaintext "fileb://$WORK/pt-a" --encryption-context tenant=a \
  --query CiphertextBlob --output text | base64 -d > "$WORK/ct-a"
expect_error AccessDeniedException kms --profile app encrypt --key-id "$KEY" --plaintext "fileb://$WORK/pt-a" --encryption-context tenant=b
expect_error AccessDeniedException kms --profile app decrypt --ciphertext-blob "fileb://$WORK/ct-a" --encryption-context tenant=a
expect_error AccessDeniedException kms --profile app create-key
echo "app: encrypt with tenant=a only"

echo "== a grant gives app Decrypt for tenant a"
GRANT=$(kms create-grant --key-id "$KEY" --grantee-principal "arn:aws:iam::$ACCT:user/app" --operations Decrypt \
  --constraints EncryptionContextSubset={tenant=a} --query GrantId --output text)
[ "$(kms --profile app decrypt --ciphertext-blob "fileb://$WORK/ct-a" --encryption-context tenant=a --query Plaintext --output text | base64 -d)" = "plaintext-for-tenant-a" ] \
  || fail "grantee cannot decrypt"
kms revoke-grant --key-id "$KEY" --grant-id "$GRANT"
expect_error AccessDeniedException kms --profile app decrypt --ciphertext-blob "fileb://$WORK/ct-a" --encryption-context tenant=a
echo "grant: allowed, then revoked"

echo "== cross-account (profile other, account $B_ACCT)"
cat > "$WORK/shared.json" <<JSON
{"Version":"2012-10-17","Statement":[
 {"Sid":"owner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:root"},"Action":"kms:*","Resource":"*"},
 {"Sid":"partner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$B_ACCT:root"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}]}
JSON
SHARED=$(kms create-key --policy "file://$WORK/shared.json" --query KeyMetadata.Arn --output text)
echo -n "partner-plaintext" > "$WORK/pt-b"
kms --profile other encrypt --key-id "$SHARED" --plaintext "fileb://$WORK/pt-b" --query CiphertextBlob --output text | base64 -d > "$WORK/ct-b"
[ "$(kms --profile other decrypt --ciphertext-blob "fileb://$WORK/ct-b" --query Plaintext --output text | base64 -d)" = "partner-plaintext" ] \
  || fail "cross-account decrypt"
expect_error AccessDeniedException kms --profile other encrypt --key-id "$KEY" --plaintext "fileb://$WORK/pt-b"
expect_error NotFoundException kms --profile other describe-key --key-id "${SHARED##*/}"
echo "cross-account: both policies allow -> ok; key policy silent -> denied"

echo "== assumed role"
cat > "$WORK/trust.json" <<JSON
{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:user/app"},"Action":"sts:AssumeRole"}]}
JSON
admin create-role --name auditor --trust-policy "$WORK/trust.json" >/dev/null
printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:DescribeKey","kms:ListKeys"],"Resource":"*"}]}' > "$WORK/auditor.json"
admin attach-policy --role auditor --policy-name read --file "$WORK/auditor.json"
SESSION=$(aws --endpoint-url "$EP" --profile app sts assume-role --role-arn "arn:aws:iam::$ACCT:role/auditor" --role-session-name e2e --output json)
export AWS_ACCESS_KEY_ID=$(jq -r .Credentials.AccessKeyId <<<"$SESSION") AWS_SECRET_ACCESS_KEY=$(jq -r .Credentials.SecretAccessKey <<<"$SESSION") \
  AWS_SESSION_TOKEN=$(jq -r .Credentials.SessionToken <<<"$SESSION")
[ "$(aws --endpoint-url "$EP" sts get-caller-identity --query Arn --output text)" = "arn:aws:sts::$ACCT:assumed-role/auditor/e2e" ] || fail "session identity"
kms describe-key --key-id "$KEY" >/dev/null
expect_error AccessDeniedException kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/pt-a" --encryption-context tenant=a
SESSION_SK=$AWS_SECRET_ACCESS_KEY; SESSION_TOKEN=$AWS_SESSION_TOKEN
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
echo "assumed role: read-only session"

echo "== audit trail"
kill -TERM "$KEYHOLD_PID"; wait "$KEYHOLD_PID" 2>/dev/null || true; KEYHOLD_PID=
AUDIT=$DATA/audit/cloudtrail.jsonl
[ "$(stat -c %a "$AUDIT")" = 600 ] || fail "audit file is not 0600"
jq -e . "$AUDIT" >/dev/null || fail "audit file is not JSON lines"
for want in "Encrypt AccessDeniedException" "Decrypt AccessDeniedException" "CreateKey AccessDeniedException" \
            "CreateGrant null" "RevokeGrant null" "Decrypt null" "DescribeKey null" "Encrypt null"; do
  read -r name code <<<"$want"
  n=$(jq -r --arg n "$name" --arg c "$code" 'select(.eventName == $n and ((.errorCode // "null") == $c)) | .eventID' "$AUDIT" | wc -l)
  [ "$n" -ge 1 ] || fail "no audit event for $name ($code)"
done
jq -e -s --arg b "$B_ACCT" 'any(.[]; .eventName=="Encrypt" and .userIdentity.accountId==$b)' "$AUDIT" >/dev/null || fail "no event for the other account's call"
jq -e -s 'any(.[]; .userIdentity.type=="AssumedRole")' "$AUDIT" >/dev/null || fail "no event for the assumed-role session"

for secret in plaintext-for-tenant-a partner-plaintext "$(base64 -w0 < "$WORK/pt-a")" "$(base64 -w0 < "$WORK/pt-b")" \
              "$APP_SK" "$B_SK" "$SESSION_SK" "$SESSION_TOKEN" "$(sed -n 's/^aws_secret_access_key = //p' "$DATA/credentials")"; do
  if grep -qF -- "$secret" "$AUDIT" "$DATA.log"; then fail "a secret or plaintext is in the audit trail or the log"; fi
done
echo "audit: $(wc -l < "$AUDIT") events, every call present, no secret"
echo "e2e authz: 1 passed, 0 failed"
