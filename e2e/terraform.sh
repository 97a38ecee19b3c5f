#!/usr/bin/env bash
# End to end with Terraform's hashicorp/aws provider (from the machine's
# local filesystem mirror, never the network): aws_kms_key (symmetric with
# rotation, RSA signing, HMAC), aws_kms_alias, aws_kms_key_policy,
# aws_kms_grant, aws_kms_external_key, aws_kms_ciphertext, and multi-Region
# keys: aws_kms_key (multi_region) with an aws_kms_replica_key and an
# aws_kms_external_key (multi_region) with an aws_kms_replica_external_key,
# both replicas through a second provider for eu-west-1 pointing at the same
# endpoint (keyhold takes the Region from the credential scope). apply; a
# second plan must show no changes; destroy must leave every key
# PendingDeletion (the multi-Region primaries PendingReplicaDeletion, as AWS:
# their replicas still exist during their own waiting period).
# Usage: e2e/terraform.sh PATH_TO_KEYHOLD_BINARY
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

command -v terraform >/dev/null || { echo "SKIP: terraform is not installed"; exit 0; }
# The mirror is the directory that holds registry.terraform.io/hashicorp/aws.
MIRROR=""
for d in /opt/tf-plugins "$HOME/.terraform.d/plugins" /usr/share/terraform/plugins /usr/local/share/terraform/plugins; do
  [ -d "$d/registry.terraform.io/hashicorp/aws" ] && { MIRROR=$d; break; }
done
if [ -z "$MIRROR" ]; then
  found=$(find / -maxdepth 8 -path /proc -prune -o -type d -path '*registry.terraform.io/hashicorp/aws' -print 2>/dev/null | head -1)
  [ -n "$found" ] && MIRROR=$(dirname "$(dirname "$(dirname "$found")")")
fi
[ -n "$MIRROR" ] || { echo "SKIP: no local mirror holding registry.terraform.io/hashicorp/aws"; exit 0; }
echo "== provider mirror: $MIRROR"

WORK=$(mktemp -d)
trap 'kill -9 ${KEYHOLD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
DATA=$WORK/data
start_keyhold "$DATA" "$PORT"
EP=http://127.0.0.1:$PORT
export AWS_SHARED_CREDENTIALS_FILE=$DATA/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
kms() { aws --endpoint-url "$EP" kms "$@"; }
ADMIN_ARN=$(aws --endpoint-url "$EP" sts get-caller-identity --query Arn --output text)
ACCOUNT=$(cut -d: -f5 <<<"$ADMIN_ARN")

cat > "$WORK/terraformrc" <<CFG
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }
}
CFG
export TF_CLI_CONFIG_FILE=$WORK/terraformrc TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
mkdir "$WORK/tf"
MRK_MATERIAL=$(head -c 32 /dev/urandom | base64)
cat > "$WORK/tf/main.tf" <<HCL
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}

provider "aws" {
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    kms = "$EP"
    sts = "$EP"
  }
}

provider "aws" {
  alias                       = "west"
  region                      = "eu-west-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    kms = "$EP"
    sts = "$EP"
  }
}

resource "aws_kms_key" "mrk" {
  description             = "terraform multi-Region primary"
  multi_region            = true
  deletion_window_in_days = 7
  enable_key_rotation     = true
}

resource "aws_kms_replica_key" "mrk" {
  provider                = aws.west
  description             = "terraform multi-Region replica"
  primary_key_arn         = aws_kms_key.mrk.arn
  deletion_window_in_days = 7
  tags = { side = "west" }
}

resource "aws_kms_alias" "replica" {
  provider      = aws.west
  name          = "alias/terraform-replica"
  target_key_id = aws_kms_replica_key.mrk.key_id
}

resource "aws_kms_external_key" "mrk_ext" {
  description             = "terraform multi-Region imported primary"
  multi_region            = true
  enabled                 = true
  deletion_window_in_days = 7
  key_material_base64     = "$MRK_MATERIAL"
}

resource "aws_kms_replica_external_key" "mrk_ext" {
  provider                = aws.west
  description             = "terraform multi-Region imported replica"
  enabled                 = true
  primary_key_arn         = aws_kms_external_key.mrk_ext.arn
  deletion_window_in_days = 7
  key_material_base64     = "$MRK_MATERIAL"
}

resource "aws_kms_key" "sym" {
  description             = "terraform symmetric"
  deletion_window_in_days = 7
  enable_key_rotation     = true
  rotation_period_in_days = 180
  tags = { team = "keyhold" }
}

resource "aws_kms_key" "rsa" {
  description              = "terraform RSA signing"
  customer_master_key_spec = "RSA_2048"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = 7
}

resource "aws_kms_key" "hmac" {
  description              = "terraform HMAC"
  customer_master_key_spec = "HMAC_256"
  key_usage                = "GENERATE_VERIFY_MAC"
  deletion_window_in_days  = 7
}

resource "aws_kms_key_policy" "hmac" {
  key_id = aws_kms_key.hmac.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "root"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::$ACCOUNT:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_kms_alias" "sym" {
  name          = "alias/terraform-sym"
  target_key_id = aws_kms_key.sym.key_id
}

resource "aws_kms_grant" "sym" {
  name              = "terraform-grant"
  key_id            = aws_kms_key.sym.key_id
  grantee_principal = "$ADMIN_ARN"
  operations        = ["Encrypt", "Decrypt", "GenerateDataKey"]
}

resource "aws_kms_external_key" "ext" {
  description             = "terraform imported"
  deletion_window_in_days = 7
  enabled                 = true
  key_material_base64     = "$(head -c 32 /dev/urandom | base64)"
}

resource "aws_kms_ciphertext" "secret" {
  key_id    = aws_kms_alias.sym.target_key_id
  plaintext = "terraform secret"
  context   = { app = "e2e" }
}

output "sym"  { value = aws_kms_key.sym.key_id }
output "rsa"  { value = aws_kms_key.rsa.key_id }
output "hmac" { value = aws_kms_key.hmac.key_id }
output "ext"  { value = aws_kms_external_key.ext.id }
output "ciphertext" { value = aws_kms_ciphertext.secret.ciphertext_blob }
output "mrk"     { value = aws_kms_key.mrk.key_id }
output "mrk_ext" { value = aws_kms_external_key.mrk_ext.id }
HCL

cd "$WORK/tf"
terraform init -no-color >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log"; fail "terraform init"; }
echo "== terraform apply ($(date -u +%T))"
terraform apply -auto-approve -no-color >"$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log"; fail "terraform apply"; }
SYM=$(terraform output -raw sym); RSA=$(terraform output -raw rsa); HMAC=$(terraform output -raw hmac); EXT=$(terraform output -raw ext)
MRK=$(terraform output -raw mrk); MRK_EXT=$(terraform output -raw mrk_ext)

grep -E "Still|Creation complete" "$WORK/apply.log" | tail -5 || true
echo "== second plan shows no changes ($(date -u +%T))"
set +e
terraform plan -detailed-exitcode -no-color >"$WORK/plan.log" 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || { cat "$WORK/plan.log"; fail "second plan is not empty (exit $rc)"; }

echo "== the keys are what Terraform asked for"
[ "$(kms get-key-rotation-status --key-id "$SYM" --query RotationPeriodInDays --output text)" = 180 ] || fail "rotation period"
[ "$(kms describe-key --key-id alias/terraform-sym --query KeyMetadata.KeyId --output text)" = "$SYM" ] || fail "alias"
[ "$(kms describe-key --key-id "$EXT" --query KeyMetadata.KeyState --output text)" = Enabled ] || fail "external key not imported"
terraform output -raw ciphertext | base64 -d > "$WORK/ct.bin"
[ "$(kms decrypt --ciphertext-blob "fileb://$WORK/ct.bin" --encryption-context app=e2e --query Plaintext --output text | base64 -d)" = "terraform secret" ] \
  || fail "aws_kms_ciphertext does not decrypt"
printf 'sign me' > "$WORK/msg"
kms sign --key-id "$RSA" --message "fileb://$WORK/msg" --signing-algorithm RSASSA_PSS_SHA_256 --query Signature --output text | base64 -d > "$WORK/sig"
kms get-public-key --key-id "$RSA" --query PublicKey --output text | base64 -d > "$WORK/pub.der"
openssl dgst -sha256 -verify <(openssl pkey -pubin -inform DER -in "$WORK/pub.der") -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 \
  -signature "$WORK/sig" "$WORK/msg" | grep -q "Verified OK" || fail "openssl does not verify the RSA signature"
kms generate-mac --key-id "$HMAC" --message "fileb://$WORK/msg" --mac-algorithm HMAC_SHA_256 --query Mac --output text | base64 -d > "$WORK/mac"
[ "$(kms verify-mac --key-id "$HMAC" --message "fileb://$WORK/msg" --mac-algorithm HMAC_SHA_256 --mac "fileb://$WORK/mac" --query MacValid --output text)" = True ] || fail "verify-mac"

echo "== multi-Region keys: the replicas in eu-west-1 share the primaries' material"
west() { aws --endpoint-url "$EP" --region eu-west-1 kms "$@"; }
[[ "$MRK" == mrk-* ]] || fail "multi-Region key id $MRK"
[ "$(west describe-key --key-id "$MRK" --query KeyMetadata.MultiRegionConfiguration.MultiRegionKeyType --output text)" = REPLICA ] || fail "replica type"
[ "$(kms describe-key --key-id "$MRK" --query 'KeyMetadata.MultiRegionConfiguration.ReplicaKeys[0].Region' --output text)" = eu-west-1 ] || fail "primary lists no replica"
[ "$(west describe-key --key-id alias/terraform-replica --query KeyMetadata.KeyId --output text)" = "$MRK" ] || fail "replica alias"
[ "$(west get-key-rotation-status --key-id "$MRK" --query KeyRotationEnabled --output text)" = True ] || fail "rotation not shared with the replica"
printf 'across regions' > "$WORK/plain"
for k in "$MRK" "$MRK_EXT"; do
  kms encrypt --key-id "$k" --plaintext "fileb://$WORK/plain" --query CiphertextBlob --output text | base64 -d > "$WORK/mrk.bin"
  [ "$(west decrypt --ciphertext-blob "fileb://$WORK/mrk.bin" --query Plaintext --output text | base64 -d)" = "across regions" ] \
    || fail "the primary's ciphertext does not decrypt in the replica Region ($k)"
done
kms describe-key --key-id "arn:aws:kms:eu-west-1:$ACCOUNT:key/$MRK" >/dev/null 2>&1 && fail "a replica ARN resolved in us-east-1"

echo "== terraform destroy ($(date -u +%T))"
terraform destroy -auto-approve -no-color >"$WORK/destroy.log" 2>&1 || { cat "$WORK/destroy.log"; fail "terraform destroy"; }
for k in "$SYM" "$RSA" "$HMAC" "$EXT"; do
  st=$(kms describe-key --key-id "$k" --query KeyMetadata.KeyState --output text)
  [ "$st" = PendingDeletion ] || fail "key $k is $st after destroy, want PendingDeletion"
done
for k in "$MRK" "$MRK_EXT"; do
  st=$(west describe-key --key-id "$k" --query KeyMetadata.KeyState --output text)
  [ "$st" = PendingDeletion ] || fail "replica $k is $st after destroy, want PendingDeletion"
  st=$(kms describe-key --key-id "$k" --query KeyMetadata.KeyState --output text)
  [ "$st" = PendingReplicaDeletion ] || fail "primary $k is $st after destroy, want PendingReplicaDeletion (its replica still exists)"
done
grep -E "Still|Destruction complete" "$WORK/destroy.log" | tail -8 || true
echo "terraform e2e passed ($(date -u +%T))"
