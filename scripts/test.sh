#!/usr/bin/env bash
# keyhold's whole test suite: vet, unit and integration tests (with the race
# detector), then the end-to-end scripts against the built binary with the
# aws CLI and boto3. Needs SoftHSM2 for the HSM and XKS parts (CI installs
# it; without it those tests skip and say so).
#
# The e2e scripts are independent of each other (each picks free ports and
# its own temporary directories; they share the one binary, built first), so
# they run at the same time, after the Go tests; each script's output goes to
# its own log, printed when the script ends, so the output stays readable.
# The Go tests run alone: several of them wait for real processes (HSM
# daemons, XKS proxies) with deadlines that a 2-core machine also busy with
# the aws CLI can miss.
# E2E_JOBS bounds how many scripts run at once (default: all of them;
# E2E_JOBS=1 runs them one by one). E2E_OVERLAP=1 starts them while the Go
# tests run (for machines with cores to spare).
set -euo pipefail
cd "$(dirname "$0")/.."
E2E_JOBS=${E2E_JOBS:-}
E2E_OVERLAP=${E2E_OVERLAP:-0}
SECONDS=0
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }

echo "== gofmt"
unformatted=$(gofmt -l cmd internal keyholdtest)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted"; exit 1; }

echo "== build"
WORK=$(mktemp -d)
e2e_pids=()
cleanup() {
  local p
  for p in "${e2e_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
BIN=$WORK/keyhold
go build -o "$BIN" ./cmd/keyhold

scripts=()
for s in e2e/*.sh; do
  case "$s" in e2e/lib.sh) continue ;; esac
  scripts+=("$s")
done

# run_e2e SCRIPT: one script, its output in its log, its status in .rc.
run_e2e() {
  local s=$1 name start rc=0
  name=$(basename "$s" .sh)
  start=$SECONDS
  bash "$s" "$BIN" >"$WORK/$name.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - start))" >"$WORK/$name.rc"
}

# report_e2e SCRIPT: print how the script went; 1 if it failed.
report_e2e() {
  local s=$1 name rc secs
  name=$(basename "$s" .sh)
  read -r rc secs <"$WORK/$name.rc" || { rc=255 secs=?; }
  if [ "$rc" = 0 ]; then
    echo "== $s: ok (${secs}s)"
    return 0
  fi
  echo "== $s: FAILED (exit $rc, ${secs}s); its output:"
  sed 's/^/    /' "$WORK/$name.log"
  return 1
}

start_e2e() {
  local jobs_max=${E2E_JOBS:-${#scripts[@]}}
  [ "$jobs_max" -ge 1 ] 2>/dev/null || jobs_max=1
  echo "== e2e: ${#scripts[@]} scripts in the background, at most $jobs_max at once ($(elapsed))"
  # set -m gives the runner its own process group, so cleanup can stop the
  # scripts together with the servers they started.
  set -m
  (
    set +m
    running=0
    for s in "${scripts[@]}"; do
      if [ "$running" -ge "$jobs_max" ]; then
        wait -n || true
        running=$((running - 1))
      fi
      run_e2e "$s" &
      running=$((running + 1))
    done
    wait
  ) &
  e2e_pids+=($!)
  set +m
}

if [ "$E2E_OVERLAP" = 1 ]; then start_e2e; fi

echo "== go vet ($(elapsed))"
go vet ./...
echo "== go test -race ($(elapsed))"
go_rc=0
go test -race -count=1 -timeout 15m ./... || go_rc=$?
echo "== load tests without the race detector ($(elapsed))"
# The race detector slows each call tenfold: the 10,000-call SDK test runs here.
go test -count=1 -run 'TestSDKNoFailuresUnderLoad' ./internal/integration/ || go_rc=$?
echo "== integration tests on PostgreSQL ($(elapsed))"
# The same in-process tests with every keyhold on a throwaway PostgreSQL
# (they skip, saying so, when initdb/postgres are not installed).
KEYHOLD_TEST_DATABASE=postgres go test -race -count=1 -timeout 10m ./internal/integration/ || go_rc=$?
echo "== keyholdtest from an external module, keyholdtest/example ($(elapsed))"
(cd keyholdtest/example && go test -count=1 ./...) || go_rc=$?
echo "== go test done ($(elapsed))"

if [ "$E2E_OVERLAP" != 1 ]; then start_e2e; fi
e2e_rc=0
wait "${e2e_pids[@]}" || true
e2e_pids=()
for s in "${scripts[@]}"; do report_e2e "$s" || e2e_rc=1; done
echo "== done ($(elapsed))"
if [ "$go_rc" != 0 ] || [ "$e2e_rc" != 0 ]; then
  echo "FAILED: go test exit $go_rc, e2e $([ "$e2e_rc" = 0 ] && echo ok || echo failed)"
  exit 1
fi
echo "all tests passed"
