#!/usr/bin/env bash
# keyhold's whole test suite: vet, unit and integration tests (with the race
# detector), then the end-to-end scripts against the built binary with the
# aws CLI and boto3. Needs SoftHSM2 for the HSM and XKS parts (CI installs
# it; without it those tests skip and say so).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== gofmt"
unformatted=$(gofmt -l cmd internal keyholdtest)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; exit 1; }
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 15m ./...
echo "== keyholdtest from an external module (keyholdtest/example)"
(cd keyholdtest/example && go test -count=1 ./...)
echo "== build"
BIN=$(mktemp -d)/keyhold
go build -o "$BIN" ./cmd/keyhold
for s in e2e/*.sh; do
  case "$s" in e2e/lib.sh) continue ;; esac
  echo "== $s"
  bash "$s" "$BIN"
done
echo "all tests passed"
