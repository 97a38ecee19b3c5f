#!/usr/bin/env bash
# bench-sign.sh: Sign and Verify requests/s per key spec, with Encrypt on a
# symmetric key as the baseline measured in the same run (ratios are
# against it). Starts `keyhold serve` on a temp data dir and runs
# `keyhold bench` for each.
# Usage: scripts/bench-sign.sh [KEYHOLD_BIN]   (env: DURATION=5s CONCURRENCY=8)
set -euo pipefail
BIN=$(realpath "${1:-/tmp/keyhold}")
DURATION=${DURATION:-5s}
CONCURRENCY=${CONCURRENCY:-8}
. "$(dirname "$0")/../e2e/lib.sh"
WORK=$(mktemp -d)
trap 'kill ${KEYHOLD_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(free_port)
start_keyhold "$WORK/data" "$PORT"
EP=http://127.0.0.1:$PORT
b() { "$BIN" bench --endpoint "$EP" --credentials-file "$WORK/data/credentials" --concurrency "$CONCURRENCY" --duration "$DURATION" --json "$@"; }
base=$(b --op encrypt --size 32 | jq .requests_per_second)
printf '%-24s %-20s %10s %10s %8s\n' "key spec" "algorithm" "op" "req/s" "x encrypt"
printf '%-24s %-20s %10s %10.0f %8s\n' SYMMETRIC_DEFAULT SYMMETRIC_DEFAULT encrypt "$base" 1.00
for spec_alg in RSA_2048:RSASSA_PSS_SHA_256 RSA_3072:RSASSA_PSS_SHA_256 RSA_4096:RSASSA_PSS_SHA_256 \
  ECC_NIST_P256:ECDSA_SHA_256 ECC_NIST_P384:ECDSA_SHA_384 ECC_NIST_P521:ECDSA_SHA_512 ECC_SECG_P256K1:ECDSA_SHA_256 \
  ECC_NIST_EDWARDS25519:ED25519_SHA_512 ML_DSA_44:ML_DSA_SHAKE_256 ML_DSA_65:ML_DSA_SHAKE_256 ML_DSA_87:ML_DSA_SHAKE_256; do
  spec=${spec_alg%%:*}; alg=${spec_alg#*:}
  for op in sign verify; do
    r=$(b --op "$op" --size 32 --key-spec "$spec" --signing-algorithm "$alg")
    [ "$(jq .errors <<<"$r")" = 0 ] || { echo "$r" >&2; fail "$op $spec had errors"; }
    rps=$(jq .requests_per_second <<<"$r")
    printf '%-24s %-20s %10s %10.0f %8.2f\n' "$spec" "$alg" "$op" "$rps" "$(echo "$rps / $base" | bc -l)"
  done
done
