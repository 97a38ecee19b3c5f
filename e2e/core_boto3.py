"""boto3 half of e2e/core.sh: the same flows through botocore's own signer."""
import os
import sys

import boto3
from botocore.exceptions import ClientError

ep, key, work = os.environ["EP"], os.environ["KEY"], os.environ["WORK"]
kms = boto3.client("kms", endpoint_url=ep, region_name="us-east-1")


def expect(code, fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        if got != code:
            sys.exit(f"FAIL: expected {code}, got {got}: {e}")
        return
    sys.exit(f"FAIL: expected {code}, call succeeded")


k = kms.create_key(Description="made by boto3", Tags=[{"TagKey": "via", "TagValue": "boto3"}])["KeyMetadata"]
assert k["KeyState"] == "Enabled" and k["Origin"] == "AWS_KMS", k
open(os.path.join(work, "boto3-key"), "w").write(k["KeyId"])
enc = kms.encrypt(KeyId="alias/e2e", Plaintext=b"from boto3", EncryptionContext={"via": "boto3"})
assert enc["KeyId"].endswith(key), enc["KeyId"]
import base64
open(os.path.join(work, "boto3-ct.b64"), "w").write(base64.b64encode(enc["CiphertextBlob"]).decode())
dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"via": "boto3"})
assert dec["Plaintext"] == b"from boto3"
dk = kms.generate_data_key(KeyId=k["KeyId"], NumberOfBytes=48)
assert len(dk["Plaintext"]) == 48
assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], KeyId=k["KeyId"])["Plaintext"] == dk["Plaintext"]
re = kms.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext={"via": "boto3"}, DestinationKeyId=k["Arn"])
assert kms.decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == b"from boto3"
assert len(kms.generate_random(NumberOfBytes=64)["Plaintext"]) == 64
tags = kms.list_resource_tags(KeyId=k["KeyId"])["Tags"]
assert tags == [{"TagKey": "via", "TagValue": "boto3"}], tags
pages = list(kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}))
assert sum(len(p["Keys"]) for p in pages) >= 3 and len(pages) >= 3, pages
aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
assert "alias/e2e" in aliases, aliases
expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=b"\x01" * 60)
expect("ValidationException", kms.schedule_key_deletion, KeyId=k["KeyId"], PendingWindowInDays=3)
expect("AlreadyExistsException", kms.create_alias, AliasName="alias/e2e", TargetKeyId=k["KeyId"])
bad = boto3.client("kms", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="AKIAEXAMPLEEXAMPLE00", aws_secret_access_key="x" * 40)
expect("UnrecognizedClientException", bad.list_keys)
print("boto3: ok")
