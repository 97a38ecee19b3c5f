#!/usr/bin/env bash
# keyhold's whole test suite: gofmt and vet, the Go tests with the race
# detector, the in-process integration tests again on PostgreSQL, the SDK
# load test, keyholdtest from an external module, and the end-to-end
# scripts against the built binary with the aws CLI, boto3 and Terraform.
# Needs SoftHSM2, PostgreSQL, Chromium for their parts (CI installs them;
# without them those tests skip and say so).
#
# What runs when (2 cores must be enough; see `ci` in the issue tracker):
#   1. gofmt.
#   2. Then everything at once, each job's output in its own log printed
#      when it ends: `go test -race ./...` (on SQLite; the replica tests
#      use PostgreSQL whatever the store), the longest job, first; beside
#      it the binary (without -race), then every e2e script with it; one
#      test binary built without -race that runs
#      the integration tests on PostgreSQL, and once that binary is built
#      (it needs nearly every package compiled without -race) go vet
#      ./... (at nice 10: nothing waits for it) and keyholdtest/example.
#      That binary also runs the 10,000 call SDK load test (on SQLite).
#      The race and non-race compiles share no artifact, so running them
#      side by side duplicates nothing and keeps both cores busy.
# No test asserts how long something takes and every wait ends only at the
# test's deadline, so a busy machine makes them slower, not red.
# The race detector runs once over the Go code: the PostgreSQL pass checks
# behaviour on the other store (the replica and database-loss tests run on
# PostgreSQL under -race in the first pass, and the store's own tests do).
#
# --compile-only compiles every package the suite compiles (with and
# without -race, and go vet's analysis, all kept in the build cache)
# without linking or running anything: .ci/run does it while apt installs.
# E2E_JOBS bounds how many e2e scripts run at once (default: all of them).
# E2E_OVERLAP=0 starts the e2e scripts only after the Go tests end.
# GO_TEST_PARALLEL is go test -parallel (default 4: the integration tests
# mostly wait for processes and disks).
set -euo pipefail
cd "$(dirname "$0")/.."
# SQLite's C amalgamation is the largest single compile in the build (~50
# CPU-seconds at -O2, once for -race and once without); the suite's
# binaries take it at -O1 (~22 s). Release builds keep Go's default.
export CGO_CFLAGS=${CGO_CFLAGS:--O1 -g}
E2E_JOBS=${E2E_JOBS:-}
E2E_OVERLAP=${E2E_OVERLAP:-1}
GO_TEST_PARALLEL=${GO_TEST_PARALLEL:-4}
SECONDS=0
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }

# compile_only: go vet ./... (which compiles, without -race, every package
# and test dependency, and caches its analysis), then every one of those
# packages with -race; test variants and links are left to the real run.
compile_only() {
  local rc=0 pkgs
  echo "== compile only: go vet ./... ($(elapsed))"
  go vet ./... || rc=$?
  echo "== compile only: the same packages with -race ($(elapsed))"
  pkgs=$(go list -deps -test -f '{{if and (eq .ForTest "") (ne .Name "main") (or .GoFiles .CgoFiles)}}{{.ImportPath}}{{end}}' ./...) || return 1
  # shellcheck disable=SC2086 # one import path a word
  go build -race $pkgs || rc=$?
  echo "== compile only: done ($(elapsed))"
  return $rc
}
if [ "${1:-}" = --compile-only ]; then
  compile_only
  exit
fi

WORK=$(mktemp -d)
bg_pids=()
cleanup() {
  local p
  for p in "${bg_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== gofmt"
unformatted=$(gofmt -l cmd internal keyholdtest)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; exit 1; }

BIN=$WORK/keyhold

# cpu_seconds FILE: the user+system seconds bash's `time` wrote in FILE
# (TIMEFORMAT='%U %S'), whole seconds.
cpu_seconds() { awk '{printf "%d", $1 + $2 + 0.5}' "$1" 2>/dev/null || echo '?'; }

# job NAME CMD...: runs CMD with its output in NAME's log and its status,
# seconds and CPU seconds (its own and its children's: where the suite's
# time goes) in NAME.rc.
job() {
  local name=$1 start=$SECONDS rc=0 TIMEFORMAT='%U %S'
  shift
  { time { "$@" >"$WORK/$name.log" 2>&1 || rc=$?; }; } 2>"$WORK/$name.cpu"
  echo "$rc $((SECONDS - start)) $(elapsed) $(cpu_seconds "$WORK/$name.cpu")" >"$WORK/$name.rc"
}

# report NAME: prints how the job went (its log when it failed); 1 if it
# failed.
report() {
  local name=$1 rc secs at cpu
  read -r rc secs at cpu <"$WORK/$name.rc" || { rc=255 secs=? at=? cpu=?; }
  if [ "$rc" = 0 ]; then
    echo "== $name: ok (${secs}s, ${cpu} CPU-s, done at $at)"
    return 0
  fi
  echo "== $name: FAILED (exit $rc, ${secs}s, ${cpu} CPU-s, done at $at); its output:"
  sed 's/^/    /' "$WORK/$name.log"
  return 1
}

# in_background CMD...: CMD in the background, in a process group of its
# own so that cleanup stops whatever it started.
in_background() {
  set -m
  "$@" &
  bg_pids+=($!)
  set +m
}

scripts=()
for s in e2e/*.sh; do
  case "$s" in e2e/lib.sh) continue ;; esac
  scripts+=("$s")
done

run_e2e() {
  local jobs_max=${E2E_JOBS:-${#scripts[@]}} running=0 s
  [ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1
  for s in "${scripts[@]}"; do
    if [ "$running" -ge "$jobs_max" ]; then
      wait -n || true
      running=$((running - 1))
    fi
    job "$s" bash "$s" "$BIN" &
    running=$((running + 1))
  done
  wait
}

# The e2e scripts' keyholds give XKS proxies 30 s a call instead of KMS's
# 250 ms: beside the Go tests on 2 cores a TLS handshake can take longer, and
# no script is about a slow proxy (internal/xks/client tests KMS's limit).
export KEYHOLD_XKS_TIMEOUT=${KEYHOLD_XKS_TIMEOUT:-30s}

start_e2e() {
  echo "== e2e: ${#scripts[@]} scripts, at most ${E2E_JOBS:-${#scripts[@]}} at once ($(elapsed))"
  in_background run_e2e
}

# The integration tests without -race, built once: on PostgreSQL (they skip,
# saying so, when initdb/postgres are missing), and the SDK load test
# (10,000 calls; the race detector would make it ten times slower) on
# SQLite, beside the other jobs: a saturated machine is what it is for.
integration_nonrace() {
  [ -x "$WORK/integration.test" ] || { echo "no integration test binary: see integration-build"; return 1; }
  cd internal/integration
  local rc=0
  echo "-- on PostgreSQL"
  KEYHOLD_TEST_DATABASE=postgres "$WORK/integration.test" -test.count=1 -test.parallel "$GO_TEST_PARALLEL" -test.timeout 15m || rc=$?
  echo "-- the SDK load test (SQLite)"
  "$WORK/integration.test" -test.count=1 -test.run '^TestSDKNoFailuresUnderLoad$' -test.v -test.timeout 10m || rc=$?
  return $rc
}

example() { cd keyholdtest/example && go test -vet=off -count=1 ./...; }

# The jobs without -race: the integration test binary first (it compiles
# nearly every package and test dependency without -race), then, side by
# side, its PostgreSQL pass and SDK load test, keyholdtest/example and go
# vet, which then
# compile almost nothing of their own. go vet runs at nice 10: nothing
# waits for it, so it takes the CPU the others leave.
nonrace() {
  job integration-build go test -vet=off -c -o "$WORK/integration.test" ./internal/integration
  job integration-nonrace integration_nonrace &
  job keyholdtest-example example &
  job go-vet nice -n 10 go vet ./... &
  wait
}

mkdir -p "$WORK/e2e"
# The race pass is the longest job: it starts first, beside the binary's
# build (the two share no compiled package).
echo "== go test -race ./... in the background ($(elapsed))"
in_background job go-test-race go test -race -vet=off -count=1 -parallel "$GO_TEST_PARALLEL" -timeout 15m ./...

echo "== build ($(elapsed))"
TIMEFORMAT="== build: %U s user, %S s system"
time go build -o "$BIN" ./cmd/keyhold

if [ "$E2E_OVERLAP" != 0 ]; then start_e2e; fi
echo "== in the background without -race: the integration test binary, then its PostgreSQL pass and SDK load test, keyholdtest/example, go vet ($(elapsed))"
in_background nonrace
if [ "$E2E_OVERLAP" = 0 ]; then
  wait "${bg_pids[@]}" || true
  bg_pids=()
  start_e2e
fi

wait "${bg_pids[@]}" || true
bg_pids=()
failed=0
echo "== go test -race ./... said:"
cat "$WORK/go-test-race.log" 2>/dev/null || true
read -r go_rc secs at cpu <"$WORK/go-test-race.rc" || { go_rc=255 secs=? at=? cpu=?; }
echo "== go test -race: exit $go_rc (${secs}s, ${cpu} CPU-s, done at $at)"
report integration-build || failed=1
report go-vet || failed=1
report integration-nonrace || failed=1
report keyholdtest-example || failed=1
for s in "${scripts[@]}"; do report "$s" || failed=1; done
echo "== done ($(elapsed))"
if [ "$go_rc" != 0 ] || [ "$failed" != 0 ]; then
  echo "FAILED: go test -race exit $go_rc; other jobs $([ "$failed" = 0 ] && echo ok || echo failed)"
  exit 1
fi
echo "all tests passed"
