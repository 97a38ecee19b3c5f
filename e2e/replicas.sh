#!/usr/bin/env bash
# End to end: three `keyhold serve` replicas on one throwaway PostgreSQL,
# sharing one root key. The aws CLI and boto3 spread their calls across the
# replicas; a key policy Deny put through one is enforced by the others
# within a second; an external key store (XKS, `keyhold xks-proxy` over
# SoftHSM2) connected through one replica is usable through all, each with
# its own connection to the proxy, and disconnected through one its keys
# are Unavailable on all within a second; then mixed load runs across the
# replicas while one of them is killed with kill -9 every 3 seconds and
# restarted: every acknowledged key, alias and ciphertext is there at the
# end, the XKS key works through every restarted replica, and each due
# deletion ran exactly once (on the leader). Also measures leader failover.
# LOAD_SECONDS (default 60) sets the length of the kill -9 phase.
# Usage: e2e/replicas.sh path/to/keyhold
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"

pgbin=""
if command -v initdb >/dev/null 2>&1; then pgbin=$(dirname "$(readlink -f "$(command -v initdb)")")
else for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do [ -x "$d/initdb" ] && { pgbin=$d; break; }; done; fi
[ -n "$pgbin" ] || { echo "SKIP e2e/replicas.sh: PostgreSQL binaries (initdb, postgres) not found; install postgresql"; exit 0; }

WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  # Replicas restarted by the kill loop (a subshell) are known by pid file.
  for p in "${PIDS[@]}" $(cat "$WORK"/r*.pid 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  # Fast shutdown of the postmaster (its pid file names it; the shell's $!
  # is runuser's).
  if [ -f "$WORK/pg/data/postmaster.pid" ]; then
    pm=$(head -1 "$WORK/pg/data/postmaster.pid")
    kill -INT "$pm" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
  fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: run it as the postgres (or nobody) user.
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  u=postgres; id -u postgres >/dev/null 2>&1 || u=nobody
  as_pg() { runuser -u "$u" -- "$@"; }
  mkdir -p "$WORK/pg"; chown "$u" "$WORK/pg"
else mkdir -p "$WORK/pg"; fi
as_pg "$pgbin/initdb" -D "$WORK/pg/data" -U keyhold --auth=trust -E UTF8 --locale=C --no-instructions >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log"; fail "initdb"; }
PGPORT=$(free_port)
as_pg "$pgbin/postgres" -D "$WORK/pg/data" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 >"$WORK/postgres.log" 2>&1 &
for _ in $(seq 1 100); do "$pgbin/pg_isready" -h 127.0.0.1 -p "$PGPORT" -q && break; sleep 0.1; done
"$pgbin/pg_isready" -h 127.0.0.1 -p "$PGPORT" -q || { cat "$WORK/postgres.log"; fail "postgres did not start"; }
DB="postgres://keyhold@127.0.0.1:$PGPORT/postgres?sslmode=disable"
psql_() { "$pgbin/psql" -X -q -t -A "$DB" -c "$1"; }

# The shared root key: created once, given to every replica.
(umask 077; head -c 32 /dev/urandom > "$WORK/root.key")

# An XKS proxy over a SoftHSM2 token, trusted by every replica.
HAVE_XKS=0
if command -v softhsm2-util >/dev/null 2>&1; then
  HAVE_XKS=1
  PPORT=$(free_port)
  "$BIN" xks-proxy init --dir "$WORK/proxy" --addr "127.0.0.1:$PPORT" --prefix /replicas >"$WORK/xks-init.json"
  XCA=$(jq -r .CAFile "$WORK/xks-init.json")
  "$BIN" xks-proxy --config "$(jq -r .ConfigFile "$WORK/xks-init.json")" 2>>"$WORK/proxy.log" &
  PIDS+=("$!")
  for _ in $(seq 1 100); do curl -fsS --cacert "$XCA" "$(jq -r .XksProxyUriEndpoint "$WORK/xks-init.json")/ping" >/dev/null 2>&1 && break; sleep 0.1; done
  export KEYHOLD_XKS_CA_FILE=$XCA
else
  echo "(softhsm2-util not installed: the custom key store part is skipped)"
fi

declare -A PORT PIDOF
start_replica() {
  local n=$1
  local dir=$WORK/r$n
  [ -n "${PORT[$n]:-}" ] || PORT[$n]=$(free_port)
  "$BIN" serve --data-dir "$dir" --addr "127.0.0.1:${PORT[$n]}" --database-url "$DB" --root-key "$WORK/root.key" \
    --deletion-interval 500ms >>"$dir.log" 2>&1 &
  PIDOF[$n]=$!
  PIDS+=("$!")
  echo "$!" > "$dir.pid"
  for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:${PORT[$n]}/healthz" >/dev/null 2>&1 && return 0
    kill -0 "${PIDOF[$n]}" 2>/dev/null || { tail -20 "$dir.log" >&2; fail "replica $n exited during start"; }
    sleep 0.1
  done
  fail "replica $n did not become healthy"
}
start_replica 1
start_replica 2
start_replica 3
EP1=http://127.0.0.1:${PORT[1]} EP2=http://127.0.0.1:${PORT[2]} EP3=http://127.0.0.1:${PORT[3]}
export AWS_SHARED_CREDENTIALS_FILE=$WORK/r1/credentials AWS_CONFIG_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
[ ! -e "$WORK/r2/credentials" ] || fail "a second replica bootstrapped its own account"

echo "== aws CLI across replicas"
KEY=$(aws --endpoint-url "$EP1" kms create-key --query KeyMetadata.KeyId --output text)
aws --endpoint-url "$EP2" kms create-alias --alias-name alias/rep --target-key-id "$KEY"
echo -n "three replicas, one truth" > "$WORK/plain"
aws --endpoint-url "$EP2" kms encrypt --key-id alias/rep --plaintext "fileb://$WORK/plain" --query CiphertextBlob --output text | base64 -d > "$WORK/ct"
[ "$(aws --endpoint-url "$EP3" kms decrypt --ciphertext-blob "fileb://$WORK/ct" --query Plaintext --output text | base64 -d)" = "three replicas, one truth" ] \
  || fail "decrypt on the third replica"
ACCOUNT=$(aws --endpoint-url "$EP1" sts get-caller-identity --query Account --output text)

echo "== a key policy Deny through replica 1, enforced by 2 and 3 within a second"
cat > "$WORK/deny.json" <<JSON
{"Version":"2012-10-17","Statement":[
 {"Sid":"admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::$ACCOUNT:root"},"Action":"kms:*","Resource":"*"},
 {"Sid":"deny-encrypt","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}
JSON
# Warm replicas 2 and 3's caches with the key first.
aws --endpoint-url "$EP3" kms encrypt --key-id "$KEY" --plaintext "fileb://$WORK/plain" >/dev/null
EP1=$EP1 EP2=$EP2 EP3=$EP3 KEY=$KEY POLICY="$WORK/deny.json" python3 - <<'PY'
import os, time, boto3
from botocore.exceptions import ClientError
c = {n: boto3.client("kms", endpoint_url=os.environ["EP%d" % n], region_name="us-east-1") for n in (1, 2, 3)}
key = os.environ["KEY"]
for n in (2, 3):
    c[n].encrypt(KeyId=key, Plaintext=b"warm")
c[1].put_key_policy(KeyId=key, PolicyName="default", Policy=open(os.environ["POLICY"]).read())
t0 = time.monotonic()
for n in (2, 3):
    while True:
        try:
            c[n].encrypt(KeyId=key, Plaintext=b"x")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDeniedException", e
            break
        if time.monotonic() - t0 > 1.0:
            raise SystemExit(f"FAIL: replica {n} still allows Encrypt 1s after the Deny")
        time.sleep(0.005)
    print(f"policy Deny enforced by replica {n} after {(time.monotonic()-t0)*1000:.1f} ms")
PY

if [ "$HAVE_XKS" = 1 ]; then
echo "== an external key store across replicas: connected through one, usable through all; disconnected through one, Unavailable on all"
EP1=$EP1 EP2=$EP2 EP3=$EP3 INIT=$WORK/xks-init.json OUT=$WORK/xks.json python3 - <<'PY'
import json, os, time, boto3
from botocore.exceptions import ClientError
c = {n: boto3.client("kms", endpoint_url=os.environ["EP%d" % n], region_name="us-east-1") for n in (1, 2, 3)}
init = json.load(open(os.environ["INIT"]))
cred = init["XksProxyAuthenticationCredential"]
cks = c[1].create_custom_key_store(CustomKeyStoreName="replicated-xks", CustomKeyStoreType="EXTERNAL_KEY_STORE",
    XksProxyConnectivity="PUBLIC_ENDPOINT", XksProxyUriEndpoint=init["XksProxyUriEndpoint"], XksProxyUriPath=init["XksProxyUriPath"],
    XksProxyAuthenticationCredential={"AccessKeyId": cred["AccessKeyId"], "RawSecretAccessKey": cred["RawSecretAccessKey"]})["CustomKeyStoreId"]
def state(n):
    return c[n].describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]
def wait_connected():
    for n in (1, 2, 3):
        t0 = time.monotonic()
        while True:
            s = state(n)
            assert s["ConnectionState"] != "FAILED", (n, s.get("ConnectionErrorCode"))
            if s["ConnectionState"] == "CONNECTED":
                break
            assert time.monotonic() - t0 < 20, f"replica {n}: {s['ConnectionState']}"
            time.sleep(0.05)
c[2].connect_custom_key_store(CustomKeyStoreId=cks)
wait_connected()
key = c[3].create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks, XksKeyId=init["XksKeyId"])["KeyMetadata"]["KeyId"]
# Every replica encrypts with its own session to the proxy; another decrypts.
for n in (1, 2, 3):
    t0 = time.monotonic()
    while True:
        try:
            ct = c[n].encrypt(KeyId=key, Plaintext=b"held outside")["CiphertextBlob"]
            break
        except ClientError as e:
            assert time.monotonic() - t0 < 5, (n, e)
            time.sleep(0.05)
    assert c[n % 3 + 1].decrypt(CiphertextBlob=ct)["Plaintext"] == b"held outside"
print("XKS key usable through replicas 1, 2 and 3")
c[1].disconnect_custom_key_store(CustomKeyStoreId=cks)
t0 = time.monotonic()
for n in (2, 3, 1):
    while True:
        st = c[n].describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
        if st == "Unavailable":
            try:
                c[n].encrypt(KeyId=key, Plaintext=b"x")
                raise SystemExit(f"FAIL: replica {n} encrypts with a key of a disconnected store")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "KMSInvalidStateException", e
            break
        if time.monotonic() - t0 > 1.0:
            raise SystemExit(f"FAIL: replica {n}: key {st} 1s after the disconnect through replica 1")
        time.sleep(0.005)
    print(f"disconnect through replica 1: key Unavailable on replica {n} after {(time.monotonic()-t0)*1000:.1f} ms")
# Connected again, for the kill -9 phase: restarted replicas rejoin.
c[3].connect_custom_key_store(CustomKeyStoreId=cks)
wait_connected()
json.dump({"store": cks, "key": key}, open(os.environ["OUT"], "w"))
PY
fi

echo "== leader failover"
leader_of() { for n in 1 2 3; do if grep -q "this replica is the leader" "$WORK/r$n.log" 2>/dev/null; then echo "$n"; fi; done; }
L=$(leader_of)
[ "$(wc -w <<<"$L")" = 1 ] || fail "leaders: '$L' (want exactly one)"
kill -9 "${PIDOF[$L]}"; t0=$(date +%s%N); wait "${PIDOF[$L]}" 2>/dev/null || true
for _ in $(seq 1 100); do
  NL=$(for n in 1 2 3; do if [ "$n" != "$L" ] && grep -q "this replica is the leader" "$WORK/r$n.log"; then echo "$n"; fi; done)
  [ -n "$NL" ] && break; sleep 0.02
done
[ -n "$NL" ] || fail "no replica took over leadership"
echo "leader failover: replica $L killed, replica $NL leads after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
start_replica "$L"

LOAD_SECONDS=${LOAD_SECONDS:-60}
echo "== mixed load across replicas, kill -9 of one every 3s for ${LOAD_SECONDS}s"
( end=$((SECONDS + LOAD_SECONDS)); i=0
  while [ $SECONDS -lt $end ]; do
    sleep 3; n=$(( i % 3 + 1 )); i=$((i + 1))
    kill -9 "${PIDOF[$n]}" 2>/dev/null || true
    wait "${PIDOF[$n]}" 2>/dev/null || true
    sleep 0.5
    start_replica "$n" >/dev/null
    echo "killed and restarted replica $n"
  done ) &
KILLER=$!
EP1=$EP1 EP2=$EP2 EP3=$EP3 OUT=$WORK/acked.json SECS=$LOAD_SECONDS python3 - <<'PY'
import base64, json, os, random, threading, time, boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
eps = [os.environ["EP%d" % n] for n in (1, 2, 3)]
cfg = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)
acked = {"keys": [], "aliases": [], "cts": [], "doomed": []}
lock = threading.Lock()
stop = time.monotonic() + int(os.environ["SECS"])
errors = [0]
def worker(w):
    cl = [boto3.client("kms", endpoint_url=e, region_name="us-east-1", config=cfg) for e in eps]
    i = 0
    while time.monotonic() < stop:
        i += 1
        c = random.choice(cl)
        try:
            k = c.create_key()["KeyMetadata"]["KeyId"]
            with lock: acked["keys"].append(k)
            name = f"alias/load-{w}-{i}"
            random.choice(cl).create_alias(AliasName=name, TargetKeyId=k)
            with lock: acked["aliases"].append([name, k])
            pt = os.urandom(32)
            ct = random.choice(cl).encrypt(KeyId=name, Plaintext=pt)["CiphertextBlob"]
            with lock: acked["cts"].append([base64.b64encode(ct).decode(), base64.b64encode(pt).decode(), k])
            if i % 5 == 0:
                random.choice(cl).schedule_key_deletion(KeyId=k, PendingWindowInDays=7)
                with lock: acked["doomed"].append(k)
        except (BotoCoreError, ClientError) as e:
            # A replica killed mid-request: unacknowledged, and allowed.
            errors[0] += 1
threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
[t.start() for t in threads]; [t.join() for t in threads]
json.dump(acked, open(os.environ["OUT"], "w"))
print(f"acknowledged: {len(acked['keys'])} keys, {len(acked['aliases'])} aliases, {len(acked['cts'])} ciphertexts; {errors[0]} calls failed while replicas died")
assert len(acked["cts"]) > 0, "no work was acknowledged"
PY
wait $KILLER
for n in 1 2 3; do PIDOF[$n]=$(cat "$WORK/r$n.pid"); kill -0 "${PIDOF[$n]}" 2>/dev/null || start_replica "$n"; done

echo "== every acknowledged key, alias and ciphertext, read through every replica"
EP1=$EP1 EP2=$EP2 EP3=$EP3 OUT=$WORK/acked.json XKS=$WORK/xks.json python3 - <<'PY'
import base64, json, os, time, boto3
from concurrent.futures import ThreadPoolExecutor
from botocore.exceptions import ClientError
acked = json.load(open(os.environ["OUT"]))
cl = [boto3.client("kms", endpoint_url=os.environ["EP%d" % n], region_name="us-east-1") for n in (1, 2, 3)]
doomed = set(acked["doomed"])
def key(i, k):
    st = cl[i % 3].describe_key(KeyId=k)["KeyMetadata"]["KeyState"]
    # A schedule whose answer was lost with a killed replica may have
    # happened: only acknowledged schedules are required.
    assert st == "PendingDeletion" if k in doomed else st in ("Enabled", "PendingDeletion"), (k, st)
def alias(i, a):
    name, k = a
    assert cl[i % 3].describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == k, name
def ciphertext(i, c):
    ct, pt, k = c
    try:
        out = cl[i % 3].decrypt(CiphertextBlob=base64.b64decode(ct))
    except ClientError as e:
        # A key scheduled for deletion refuses to decrypt, as in AWS (also
        # one whose schedule was not acknowledged: its answer was lost
        # with a killed replica, as key() allows).
        assert e.response["Error"]["Code"] == "KMSInvalidStateException", e
        assert k in doomed or cl[i % 3].describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "PendingDeletion", e
        return
    assert out["Plaintext"] == base64.b64decode(pt)
with ThreadPoolExecutor(6) as ex:
    for f, items in ((key, acked["keys"]), (alias, acked["aliases"]), (ciphertext, acked["cts"])):
        list(ex.map(f, range(len(items)), items))
print("all acknowledged state present on every replica")
if os.path.exists(os.environ["XKS"]):
    xks = json.load(open(os.environ["XKS"]))
    # Every replica was killed and restarted: each opened its own session to
    # the proxy again at start (the store stayed CONNECTED throughout).
    for n, c in enumerate(cl, 1):
        t0 = time.monotonic()
        while True:
            try:
                ct = c.encrypt(KeyId=xks["key"], Plaintext=b"after the kills")["CiphertextBlob"]
                break
            except ClientError as e:
                assert time.monotonic() - t0 < 10, (n, e)
                time.sleep(0.1)
        assert cl[n % 3].decrypt(CiphertextBlob=ct)["Plaintext"] == b"after the kills"
        st = c.describe_custom_key_stores(CustomKeyStoreId=xks["store"])["CustomKeyStores"][0]["ConnectionState"]
        assert st == "CONNECTED", (n, st)
    print("XKS store CONNECTED and its key usable through every restarted replica")
PY

echo "== due deletions run once, on the leader"
ACKED=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["doomed"]))' "$WORK/acked.json")
DOOMED=$(psql_ "SELECT count(*) FROM keys WHERE state = 'PendingDeletion'")
[ "$ACKED" -gt 0 ] && [ "$DOOMED" -ge "$ACKED" ] || fail "$ACKED deletions acknowledged, $DOOMED keys pending deletion"
before=$(cat "$WORK"/r*.log | grep -c "deleted key after its waiting period" || true)
# Move the waiting periods into the past, as seven days passing would.
psql_ "UPDATE keys SET deletion_date = 1 WHERE state = 'PendingDeletion'"
for _ in $(seq 1 100); do
  [ "$(psql_ "SELECT count(*) FROM keys WHERE state = 'PendingDeletion'")" = 0 ] && break; sleep 0.1
done
[ "$(psql_ "SELECT count(*) FROM keys WHERE state = 'PendingDeletion'")" = 0 ] || fail "due keys were not deleted"
sleep 1
after=$(cat "$WORK"/r*.log | grep -c "deleted key after its waiting period" || true)
[ $((after - before)) = "$DOOMED" ] || fail "$DOOMED keys were due, $((after - before)) deletions logged (want exactly one each)"
dups=$(cat "$WORK"/r*.log | grep "deleted key after its waiting period" | grep -o 'key=[^ ]*' | sort | uniq -d | wc -l)
[ "$dups" = 0 ] || fail "$dups keys deleted more than once"
echo "$DOOMED due keys deleted exactly once each"
echo "replicas: ok"
