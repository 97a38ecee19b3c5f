#!/usr/bin/env bash
# Throughput of keyhold on its two stores, measured in one run: Encrypt and
# CreateKey req/s and p99 with 1 replica on SQLite, 1 replica on PostgreSQL
# and 2 replicas on PostgreSQL (the load split evenly, same total
# concurrency), each with its ratio to the SQLite run; then the time a key
# policy change takes to reach the other replica (boto3, 20 changes) and
# the leader failover time after kill -9 of the leader (3 times).
# PostgreSQL runs durably (fsync on, synchronous_commit on), as keyhold's
# "acknowledged means durable" needs.
# Usage: scripts/bench-replicas.sh path/to/keyhold [seconds per run, default 5]
set -euo pipefail
BIN=$(realpath "$1"); SECS=${2:-5}; CONC=${CONC:-16}
. "$(dirname "$0")/../e2e/lib.sh"
pgbin=""
if command -v initdb >/dev/null 2>&1; then pgbin=$(dirname "$(readlink -f "$(command -v initdb)")")
else for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do [ -x "$d/initdb" ] && { pgbin=$d; break; }; done; fi
[ -n "$pgbin" ] || fail "PostgreSQL binaries not found"
WORK=$(mktemp -d); chmod 755 "$WORK"; PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -f "$WORK/pg/data/postmaster.pid" ] && kill -INT "$(head -1 "$WORK/pg/data/postmaster.pid")" 2>/dev/null || true
  sleep 1; wait 2>/dev/null || true; rm -rf "$WORK"
}
trap cleanup EXIT
as_pg() { "$@"; }
mkdir -p "$WORK/pg"
if [ "$(id -u)" = 0 ]; then u=postgres; id -u postgres >/dev/null 2>&1 || u=nobody; as_pg() { runuser -u "$u" -- "$@"; }; chown "$u" "$WORK/pg"; fi
as_pg "$pgbin/initdb" -D "$WORK/pg/data" -U keyhold --auth=trust -E UTF8 --locale=C --no-instructions >/dev/null
PGPORT=$(free_port)
as_pg "$pgbin/postgres" -D "$WORK/pg/data" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 >"$WORK/postgres.log" 2>&1 &
for _ in $(seq 1 100); do "$pgbin/pg_isready" -h 127.0.0.1 -p "$PGPORT" -q && break; sleep 0.1; done
(umask 077; head -c 32 /dev/urandom > "$WORK/root.key")

serve() { # NAME PORT [serve flags...]
  local name=$1 port=$2; shift 2
  "$BIN" serve --data-dir "$WORK/$name" --addr "127.0.0.1:$port" "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "$name did not start"
}
bench() { # OP CREDS CONCURRENCY ENDPOINT -> JSON
  "$BIN" bench --op "$1" --credentials-file "$2" --concurrency "$3" --duration "${SECS}s" --endpoint "$4" --json
}
report() { # LABEL OP JSON...  (the first report of OP is the baseline)
  local label=$1 op=$2; shift 2
  python3 - "$label" "$op" "$WORK/base-$op" "$@" <<'PY'
import json, os, sys
label, op, base, runs = sys.argv[1], sys.argv[2], sys.argv[3], [json.loads(a) for a in sys.argv[4:]]
rps = sum(r["requests_per_second"] for r in runs)
p99 = max(r["latency_ms"]["p99"] for r in runs)
errs = sum(r["errors"] for r in runs)
if not os.path.exists(base):
    open(base, "w").write(str(rps))
ratio = rps / float(open(base).read())
print(f"{label:<24} {op:<11} {rps:>9.0f} req/s ({ratio:.2f}x)   p99 {p99:>7.2f} ms   errors {errs}")
PY
}
echo "keyhold bench, ${SECS}s per run, total concurrency $CONC, $(nproc) cores"
P1=$(free_port); serve sqlite "$P1"
for op in encrypt create-key; do report "1 replica, SQLite" "$op" "$(bench "$op" "$WORK/sqlite/credentials" "$CONC" "http://127.0.0.1:$P1")"; done
kill -9 "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
DB="postgres://keyhold@127.0.0.1:$PGPORT/postgres?sslmode=disable"
P2=$(free_port); P3=$(free_port)
serve pg1 "$P2" --database-url "$DB" --root-key "$WORK/root.key"
for op in encrypt create-key; do report "1 replica, PostgreSQL" "$op" "$(bench "$op" "$WORK/pg1/credentials" "$CONC" "http://127.0.0.1:$P2")"; done
serve pg2 "$P3" --database-url "$DB" --root-key "$WORK/root.key"
for op in encrypt create-key; do
  bench "$op" "$WORK/pg1/credentials" $((CONC / 2)) "http://127.0.0.1:$P2" > "$WORK/a.json" &
  a=$!
  bench "$op" "$WORK/pg1/credentials" $((CONC / 2)) "http://127.0.0.1:$P3" > "$WORK/b.json"
  wait $a
  report "2 replicas, PostgreSQL" "$op" "$(cat "$WORK/a.json")" "$(cat "$WORK/b.json")"
done

# Policy propagation: a Deny put through one replica, timed until the other
# refuses; then the Allow back, timed until it accepts again.
AWS_SHARED_CREDENTIALS_FILE=$WORK/pg1/credentials A="http://127.0.0.1:$P2" B="http://127.0.0.1:$P3" python3 - <<'PY'
import os, statistics, time, boto3
from botocore.exceptions import ClientError
a = boto3.client("kms", endpoint_url=os.environ["A"], region_name="us-east-1")
b = boto3.client("kms", endpoint_url=os.environ["B"], region_name="us-east-1")
key = a.create_key()["KeyMetadata"]["KeyId"]
acct = boto3.client("sts", endpoint_url=os.environ["A"], region_name="us-east-1").get_caller_identity()["Account"]
admin = '{"Sid":"admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"kms:*","Resource":"*"}' % acct
deny = '{"Version":"2012-10-17","Statement":[%s,{"Sid":"d","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}' % admin
allow = '{"Version":"2012-10-17","Statement":[%s]}' % admin
def denied():
    try:
        b.encrypt(KeyId=key, Plaintext=b"x")
        return False
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDeniedException", e
        return True
times = []
b.encrypt(KeyId=key, Plaintext=b"warm")
for i in range(20):
    want = i % 2 == 0
    a.put_key_policy(KeyId=key, PolicyName="default", Policy=deny if want else allow)
    t0 = time.monotonic()
    while denied() != want:
        assert time.monotonic() - t0 < 5, "policy change not visible after 5s"
    times.append((time.monotonic() - t0) * 1000)
times.sort()
print(f"policy change seen by the other replica: median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms (20 changes; polled back to back)")
PY

# Leader failover: kill -9 the leader, time until the other replica leads.
declare -A PORTOF=([pg1]=$P2 [pg2]=$P3) PIDOF=([pg1]=${PIDS[1]} [pg2]=${PIDS[2]})
L=""
for _ in $(seq 1 50); do
  L=$(grep -l "this replica is the leader" "$WORK/pg1.log" "$WORK/pg2.log" 2>/dev/null | head -1 || true); [ -n "$L" ] && break; sleep 0.1
done
[ -n "$L" ] || fail "no leader"
L=$(basename "$L" .log)
leads() { grep -c "this replica is the leader" "$WORK/$1.log" || true; }
for trial in 1 2 3; do
  O=pg1; [ "$L" = pg1 ] && O=pg2
  before=$(leads "$O")
  kill -9 "${PIDOF[$L]}"; t0=$(date +%s%N); wait "${PIDOF[$L]}" 2>/dev/null || true
  while [ "$(leads "$O")" = "$before" ]; do
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 10000 ] || fail "no failover within 10s"
    sleep 0.01
  done
  echo "leader failover $trial: $L killed (kill -9), $O leads after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  serve "$L" "${PORTOF[$L]}" --database-url "$DB" --root-key "$WORK/root.key"
  PIDOF[$L]=${PIDS[-1]}
  L=$O
done
