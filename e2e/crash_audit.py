#!/usr/bin/env python3
"""Load and checks for e2e/crash_audit.sh (issue 14).

  crash_audit.py load ENDPOINT SECONDS ACKS_FILE   mixed boto3 load, no retries;
      every answered call is appended to ACKS_FILE (one JSON line, flushed)
  crash_audit.py check ENDPOINT ACKS_FILE AUDIT_FILE
      every acknowledged request id is in the audit file exactly once, and
      every acknowledged key, alias and ciphertext is there.
Credentials come from the environment (AWS_SHARED_CREDENTIALS_FILE)."""
import base64, json, os, random, sys, threading, time

import boto3
from botocore.config import Config


def client(ep):
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10,
                 max_pool_connections=4)
    return boto3.session.Session().client("kms", endpoint_url=ep, region_name="us-east-1", config=cfg)


def load(ep, seconds, acks_path):
    stop = time.time() + seconds
    out = open(acks_path, "a")
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}

    def ack(resp, op, **kw):
        rec = {"rid": resp["ResponseMetadata"]["RequestId"], "op": op}
        rec.update(kw)
        with lock:
            out.write(json.dumps(rec) + "\n")
            out.flush()
            counts["ok"] += 1

    def worker(n):
        c = client(ep)
        rnd = random.Random(n)
        keys, cts = [], []
        i = 0
        while time.time() < stop:
            i += 1
            try:
                r = rnd.random()
                if not keys or r < 0.15:
                    resp = c.create_key(Description=f"crash-{n}-{i}")
                    kid = resp["KeyMetadata"]["KeyId"]
                    keys.append(kid)
                    ack(resp, "CreateKey", key=kid)
                elif r < 0.25:
                    alias = f"alias/crash-{n}-{i}"
                    kid = rnd.choice(keys)
                    ack(c.create_alias(AliasName=alias, TargetKeyId=kid), "CreateAlias", alias=alias, key=kid)
                elif r < 0.55:
                    kid = rnd.choice(keys)
                    pt = os.urandom(rnd.randint(1, 4096))
                    ec = {"worker": str(n), "i": str(i)}
                    resp = c.encrypt(KeyId=kid, Plaintext=pt, EncryptionContext=ec)
                    ack(resp, "Encrypt", key=kid, ct=base64.b64encode(resp["CiphertextBlob"]).decode(),
                        pt=base64.b64encode(pt).decode(), ec=ec)
                elif r < 0.65:
                    kid = rnd.choice(keys)
                    ack(c.put_key_policy(KeyId=kid, PolicyName="default", Policy=json.dumps({
                        "Version": "2012-10-17", "Statement": [{"Sid": f"s{i}", "Effect": "Allow",
                        "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]})), "PutKeyPolicy", key=kid)
                elif r < 0.70:
                    resp = c.create_key(Description=f"doomed-{n}-{i}")
                    kid = resp["KeyMetadata"]["KeyId"]
                    ack(resp, "CreateKey", key=kid)
                    ack(c.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7), "ScheduleKeyDeletion", key=kid)
                elif r < 0.85:
                    ack(c.describe_key(KeyId=rnd.choice(keys)), "DescribeKey")
                else:
                    resp = c.generate_data_key(KeyId=rnd.choice(keys), KeySpec="AES_256")
                    ack(resp, "GenerateDataKey")
            except Exception:
                # The server was killed under us: not acknowledged.
                counts["failed"] += 1
                time.sleep(0.05)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(int(os.environ.get("CRASH_WORKERS", "4")))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"load: {counts['ok']} acknowledged, {counts['failed']} failed (server down)")


def check(ep, acks_path, audit_path):
    acks = [json.loads(l) for l in open(acks_path) if l.strip()]
    seen = {}
    torn = 0
    for line in open(audit_path, encoding="utf-8", errors="replace"):
        try:
            ev = json.loads(line)
        except ValueError:
            torn += 1
            continue
        seen[ev.get("requestID")] = seen.get(ev.get("requestID"), 0) + 1
    missing = [a for a in acks if seen.get(a["rid"], 0) == 0]
    dup = [a for a in acks if seen.get(a["rid"], 0) > 1]
    by_op = {}
    for a in missing:
        by_op[a["op"]] = by_op.get(a["op"], 0) + 1
    print(f"audit: {len(acks)} acknowledged requests, {len(missing)} without an event {by_op}, "
          f"{len(dup)} with more than one, {torn} unparsable lines")
    c = client(ep)
    lost = 0
    aliases = {}
    for p in c.get_paginator("list_aliases").paginate():
        for a in p["Aliases"]:
            aliases[a["AliasName"]] = a.get("TargetKeyId")
    for a in acks:
        try:
            if a["op"] == "CreateKey":
                c.describe_key(KeyId=a["key"])
            elif a["op"] == "CreateAlias":
                if aliases.get(a["alias"]) != a["key"]:
                    raise Exception("alias " + a["alias"] + " lost")
            elif a["op"] == "Encrypt":
                pt = c.decrypt(CiphertextBlob=base64.b64decode(a["ct"]), EncryptionContext=a["ec"])["Plaintext"]
                if pt != base64.b64decode(a["pt"]):
                    raise Exception("plaintext differs")
            elif a["op"] == "ScheduleKeyDeletion":
                st = c.describe_key(KeyId=a["key"])["KeyMetadata"]["KeyState"]
                if st != "PendingDeletion":
                    raise Exception("key " + a["key"] + " is " + st)
        except Exception as e:
            lost += 1
            if lost <= 5:
                print("lost:", a["op"], e)
    kinds = sum(1 for a in acks if a["op"] in ("CreateKey", "CreateAlias", "Encrypt", "ScheduleKeyDeletion"))
    print(f"state: {kinds} acknowledged keys, aliases, ciphertexts and deletions checked, {lost} lost")
    if missing or dup or lost or not acks:
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
