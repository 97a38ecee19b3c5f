#!/usr/bin/env bash
# keyhold's whole test suite: vet, unit and integration tests (with the race
# detector), then the end-to-end scripts against the built binary with the
# aws CLI and boto3. Needs SoftHSM2 for the HSM and XKS parts (CI installs
# it; without it those tests skip and say so).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== gofmt"
unformatted=$(gofmt -l cmd internal)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; exit 1; }
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 15m ./...
echo "== go test (load tests without the race detector)"
go test -count=1 -run 'TestSDKNoFailuresUnderLoad' ./internal/integration/
echo "== integration tests on PostgreSQL"
# The same in-process tests with every keyhold on a throwaway PostgreSQL
# (they skip, saying so, when initdb/postgres are not installed).
KEYHOLD_TEST_DATABASE=postgres go test -race -count=1 -timeout 10m ./internal/integration/
echo "== build"
BIN=$(mktemp -d)/keyhold
go build -o "$BIN" ./cmd/keyhold
for s in e2e/*.sh; do
  case "$s" in e2e/lib.sh) continue ;; esac
  echo "== $s"
  bash "$s" "$BIN"
done
echo "all tests passed"
