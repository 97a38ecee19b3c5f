#!/usr/bin/env bash
# bench-policy.sh: the added cost of key policy evaluation per Encrypt.
# Starts `keyhold serve` on a temp data dir, makes one key with the default
# key policy and one with a 10-statement policy with conditions, and runs
# `keyhold bench --op encrypt` against each in the same run.
# Usage: scripts/bench-policy.sh [KEYHOLD_BIN]   (env: DURATION=10s CONCURRENCY=16)
set -euo pipefail
BIN=$(realpath "${1:-/tmp/keyhold}")
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-16}
. "$(dirname "$0")/../e2e/lib.sh"
WORK=$(mktemp -d)
trap 'kill ${KEYHOLD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
start_keyhold "$WORK/data" "$PORT"
export AWS_SHARED_CREDENTIALS_FILE=$WORK/data/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1
EP=http://127.0.0.1:$PORT
ACCT=$(aws --endpoint-url "$EP" sts get-caller-identity --query Account --output text)
ROOT="arn:aws:iam::$ACCT:root"
cat > "$WORK/policy.json" <<JSON
{"Version":"2012-10-17","Id":"ten-statements","Statement":[
 {"Sid":"Admin","Effect":"Allow","Principal":{"AWS":"$ROOT"},"Action":"kms:*","Resource":"*"},
 {"Sid":"DenyOtherRegions","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringNotEqualsIfExists":{"aws:RequestedRegion":"us-east-1"}}},
 {"Sid":"DenyInsecureUnlessLocal","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"},"NotIpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]}}},
 {"Sid":"TenantA","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:role/tenant-a"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}},
 {"Sid":"TenantB","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:role/tenant-b"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"b"}}},
 {"Sid":"Auditors","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCT:role/auditor"},"Action":["kms:Describe*","kms:List*","kms:Get*"],"Resource":"*"},
 {"Sid":"NoDeleteWithoutMFA","Effect":"Deny","Principal":"*","Action":["kms:ScheduleKeyDeletion","kms:DisableKey"],"Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"},"StringNotLike":{"aws:PrincipalArn":"arn:aws:iam::$ACCT:user/keyhold-*"}}},
 {"Sid":"ContextKeys","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["forbidden","secret"]}}},
 {"Sid":"Until2030","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}},
 {"Sid":"Grants","Effect":"Allow","Principal":{"AWS":"$ROOT"},"Action":["kms:CreateGrant","kms:ListGrants","kms:RevokeGrant"],"Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"true"}}}
]}
JSON
DEFAULT_KEY=$(aws --endpoint-url "$EP" kms create-key --query KeyMetadata.Arn --output text)
TEN_KEY=$(aws --endpoint-url "$EP" kms create-key --policy "file://$WORK/policy.json" --query KeyMetadata.Arn --output text)
run() { "$BIN" bench --endpoint "$EP" --credentials-file "$WORK/data/credentials" --op encrypt --size 32 \
  --concurrency "$CONCURRENCY" --duration "$DURATION" --key-id "$1" --json; }
D=$(run "$DEFAULT_KEY"); T=$(run "$TEN_KEY"); D2=$(run "$DEFAULT_KEY")
echo "default policy:      $D"
echo "10-statement policy: $T"
echo "default (again):     $D2"
jq -rn --argjson d "$D" --argjson t "$T" --argjson d2 "$D2" \
  '"throughput ratio 10-statement/default: \(($t.requests_per_second / (($d.requests_per_second + $d2.requests_per_second)/2)) * 1000 | round / 1000)"'
