package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func TestKeyLifecycleAndCrypto(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS

	ck, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("first"),
		Tags: []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("a")}}})
	if err != nil {
		t.Fatal(err)
	}
	md := ck.KeyMetadata
	if md.KeyState != types.KeyStateEnabled || !md.Enabled || md.Origin != types.OriginTypeAwsKms ||
		md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
		*md.AWSAccountId != e.Account || !strings.HasSuffix(*md.Arn, ":key/"+*md.KeyId) || md.CreationDate == nil {
		t.Fatalf("unexpected metadata %+v", md)
	}
	keyID, keyARN := *md.KeyId, *md.Arn

	// Every identifier form AWS accepts for Encrypt/DescribeKey.
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	aliasARN := "arn:aws:kms:us-east-1:" + e.Account + ":alias/app"
	ec := map[string]string{"tenant": "a"}
	var ct []byte
	for _, id := range []string{keyID, keyARN, "alias/app", aliasARN} {
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil || *d.KeyMetadata.KeyId != keyID {
			t.Fatalf("DescribeKey(%s) = %v", id, err)
		}
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("hello kms"), EncryptionContext: ec})
		if err != nil {
			t.Fatalf("Encrypt(%s): %v", id, err)
		}
		if *enc.KeyId != keyARN || enc.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
			t.Fatalf("Encrypt response %+v", enc)
		}
		ct = enc.CiphertextBlob
	}
	if bytes.Contains(ct, []byte("hello kms")) {
		t.Fatal("plaintext visible in ciphertext")
	}
	// Decrypt with and without KeyId.
	for _, id := range []*string{nil, aws.String(keyID), aws.String("alias/app")} {
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct, EncryptionContext: ec, KeyId: id})
		if err != nil || string(dec.Plaintext) != "hello kms" || *dec.KeyId != keyARN {
			t.Fatalf("Decrypt(KeyId=%v) = %+v, %v", id, dec, err)
		}
	}
	// Wrong or missing context, tampering, garbage: InvalidCiphertextException.
	for name, in := range map[string]*kms.DecryptInput{
		"wrong context":   {CiphertextBlob: ct, EncryptionContext: map[string]string{"tenant": "b"}},
		"missing context": {CiphertextBlob: ct},
		"tampered":        {CiphertextBlob: flip(ct, len(ct)-1), EncryptionContext: ec},
		"header tampered": {CiphertextBlob: flip(ct, 20), EncryptionContext: ec},
		"garbage":         {CiphertextBlob: []byte("not a keyhold ciphertext at all, really")},
	} {
		_, err := c.Decrypt(ctx, in)
		wantErr[*types.InvalidCiphertextException](t, err)
		_ = name
	}

	// A second key: IncorrectKeyException, ReEncrypt to it.
	k2, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct, EncryptionContext: ec, KeyId: k2.KeyMetadata.KeyId})
	wantErr[*types.IncorrectKeyException](t, err)
	re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: ct, SourceEncryptionContext: ec,
		DestinationKeyId: k2.KeyMetadata.Arn, DestinationEncryptionContext: map[string]string{"x": "y"}})
	if err != nil || *re.SourceKeyId != keyARN || *re.KeyId != *k2.KeyMetadata.Arn {
		t.Fatalf("ReEncrypt = %+v, %v", re, err)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"x": "y"}})
	if err != nil || string(dec.Plaintext) != "hello kms" || *dec.KeyId != *k2.KeyMetadata.Arn {
		t.Fatalf("Decrypt re-encrypted = %v", err)
	}

	// Data keys: KeySpec and NumberOfBytes; the encrypted copy decrypts to the plaintext copy.
	for _, in := range []*kms.GenerateDataKeyInput{
		{KeyId: &keyID, KeySpec: types.DataKeySpecAes256},
		{KeyId: &keyID, KeySpec: types.DataKeySpecAes128},
		{KeyId: aws.String("alias/app"), NumberOfBytes: aws.Int32(64), EncryptionContext: ec},
	} {
		dk, err := c.GenerateDataKey(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want := map[types.DataKeySpec]int{types.DataKeySpecAes256: 32, types.DataKeySpecAes128: 16, "": 64}[in.KeySpec]
		if len(dk.Plaintext) != want {
			t.Fatalf("data key length %d, want %d", len(dk.Plaintext), want)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: in.EncryptionContext})
		if err != nil || !bytes.Equal(dec.Plaintext, dk.Plaintext) {
			t.Fatalf("data key round trip: %v", err)
		}
	}
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID})
	wantCode(t, err, "ValidationException")
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)})
	wantCode(t, err, "ValidationException")
	wp, err := c.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256})
	if err != nil || len(wp.CiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyWithoutPlaintext: %v", err)
	}
	if dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wp.CiphertextBlob}); err != nil || len(dec.Plaintext) != 32 {
		t.Fatalf("decrypt data key without plaintext: %v", err)
	}
	rnd, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1024)})
	if err != nil || len(rnd.Plaintext) != 1024 {
		t.Fatalf("GenerateRandom: %v", err)
	}
	_, err = c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1025)})
	wantCode(t, err, "ValidationException")

	// Disable -> DisabledException; enable -> works again.
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	wantErr[*types.DisabledException](t, err)
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct, EncryptionContext: ec})
	wantErr[*types.DisabledException](t, err)
	if d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); d.KeyMetadata.KeyState != types.KeyStateDisabled || d.KeyMetadata.Enabled {
		t.Fatalf("state after disable: %v", d.KeyMetadata.KeyState)
	}
	if _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &keyARN}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct, EncryptionContext: ec}); err != nil {
		t.Fatal(err)
	}

	// Description and policies.
	if _, err := c.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: &keyID, Description: aws.String("second")}); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); *d.KeyMetadata.Description != "second" {
		t.Fatal("description not updated")
	}
	pol, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID})
	if err != nil || !strings.Contains(*pol.Policy, "arn:aws:iam::"+e.Account+":root") || *pol.PolicyName != "default" {
		t.Fatalf("GetKeyPolicy = %v, %v", pol, err)
	}
	newPol := `{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"}]}`
	if _, err := c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: &newPol}); err != nil {
		t.Fatal(err)
	}
	if pol, _ := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID, PolicyName: aws.String("default")}); *pol.Policy != newPol {
		t.Fatal("policy not replaced")
	}
	_, err = c.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(`{"Statement": "nope"`)})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	if pol, _ := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID}); *pol.Policy != newPol {
		t.Fatal("a rejected PutKeyPolicy changed the policy")
	}
	lp, err := c.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: &keyID})
	if err != nil || len(lp.PolicyNames) != 1 || lp.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies = %v, %v", lp, err)
	}

	// Tags.
	if _, err := c.TagResource(ctx, &kms.TagResourceInput{KeyId: &keyID, Tags: []types.Tag{
		{TagKey: aws.String("team"), TagValue: aws.String("b")}, {TagKey: aws.String("env"), TagValue: aws.String("dev")}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.TagResource(ctx, &kms.TagResourceInput{KeyId: &keyID, Tags: []types.Tag{
		{TagKey: aws.String("ok"), TagValue: aws.String("1")}, {TagKey: aws.String("aws:reserved"), TagValue: aws.String("x")}}})
	wantErr[*types.TagException](t, err)
	tags, err := c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: &keyID})
	if err != nil || len(tags.Tags) != 2 {
		t.Fatalf("ListResourceTags = %+v, %v (a rejected TagResource must change nothing)", tags, err)
	}
	if _, err := c.UntagResource(ctx, &kms.UntagResourceInput{KeyId: &keyID, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	tags, _ = c.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: &keyID})
	if len(tags.Tags) != 1 || *tags.Tags[0].TagKey != "env" {
		t.Fatalf("tags after untag: %+v", tags.Tags)
	}

	// Aliases.
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: k2.KeyMetadata.KeyId})
	wantErr[*types.AlreadyExistsException](t, err)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/mine"), TargetKeyId: &keyID})
	wantErr[*types.InvalidAliasNameException](t, err)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("noprefix"), TargetKeyId: &keyID})
	wantCode(t, err, "ValidationException")
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/a:b"), TargetKeyId: &keyID})
	wantCode(t, err, "ValidationException")
	if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: k2.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	if enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("x")}); err != nil || *enc.KeyId != *k2.KeyMetadata.Arn {
		t.Fatalf("alias not moved: %v", err)
	}
	la, err := c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: k2.KeyMetadata.KeyId})
	if err != nil || len(la.Aliases) != 1 || *la.Aliases[0].AliasName != "alias/app" || *la.Aliases[0].AliasArn != aliasARN {
		t.Fatalf("ListAliases = %+v, %v", la, err)
	}
	if _, err := c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/app")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/app")})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/app"), Plaintext: []byte("x")})
	wantErr[*types.NotFoundException](t, err)

	// Scheduled deletion.
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &keyID, PendingWindowInDays: aws.Int32(6)})
	wantCode(t, err, "ValidationException")
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &keyID, PendingWindowInDays: aws.Int32(31)})
	wantCode(t, err, "ValidationException")
	sd, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &keyID, PendingWindowInDays: aws.Int32(7)})
	if err != nil || sd.KeyState != types.KeyStatePendingDeletion || *sd.PendingWindowInDays != 7 || sd.DeletionDate == nil {
		t.Fatalf("ScheduleKeyDeletion = %+v, %v", sd, err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &keyID})
	wantErr[*types.KMSInvalidStateException](t, err)
	// PendingDeletionWindowInDays belongs to multi-Region primaries in
	// PendingReplicaDeletion only (the model says so); not to this key.
	if d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); d.KeyMetadata.DeletionDate == nil || d.KeyMetadata.PendingDeletionWindowInDays != nil {
		t.Fatalf("DescribeKey during pending deletion: %+v", d.KeyMetadata)
	}
	cd, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: &keyID})
	if err != nil || *cd.KeyId != keyARN {
		t.Fatalf("CancelKeyDeletion = %v", err)
	}
	if d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Fatalf("state after cancel = %s, want Disabled", d.KeyMetadata.KeyState)
	}
	_, err = c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: &keyID})
	wantErr[*types.KMSInvalidStateException](t, err)
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x01
	return out
}

func TestListKeysPaging(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		k, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		want[*k.KeyMetadata.KeyId] = true
	}
	got := map[string]bool{}
	p := kms.NewListKeysPaginator(e.KMS, &kms.ListKeysInput{Limit: aws.Int32(3)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.Keys) > 3 {
			t.Fatalf("page of %d keys with Limit 3", len(out.Keys))
		}
		for _, k := range out.Keys {
			if got[*k.KeyId] {
				t.Fatalf("key %s listed twice", *k.KeyId)
			}
			got[*k.KeyId] = true
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages, %d keys; want 3 pages, %d keys", pages, len(got), len(want))
	}
	_, err := e.KMS.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("!!!not-a-marker")})
	wantErr[*types.InvalidMarkerException](t, err)
	_, err = e.KMS.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(0)})
	wantCode(t, err, "ValidationException")
	_, err = e.KMS.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1001)})
	wantCode(t, err, "ValidationException")
}

func fiftyOneTags() []types.Tag {
	var ts []types.Tag
	for i := 0; i < 51; i++ {
		ts = append(ts, types.Tag{TagKey: aws.String(fmt.Sprint("k", i)), TagValue: aws.String("v")})
	}
	return ts
}

func TestBadInputChangesNothing(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	for name, in := range map[string]*kms.CreateKeyInput{
		"hmac without usage":    {KeySpec: types.KeySpecHmac256},
		"ecc for encryption":    {KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeEncryptDecrypt},
		"sm2 outside china":     {KeySpec: types.KeySpecSm2, KeyUsage: types.KeyUsageTypeSignVerify},
		"multi-region in a cks": {MultiRegion: aws.Bool(true), Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String("cks-1234567890abcdef0")},
		"too many tags":         {Tags: fiftyOneTags()},
		"reserved tag any case": {Tags: []types.Tag{{TagKey: aws.String("AWS:x"), TagValue: aws.String("v")}}},
		"bad policy":            {Policy: aws.String("not json")},
		"reserved tag":          {Tags: []types.Tag{{TagKey: aws.String("aws:x"), TagValue: aws.String("v")}}},
		"sign usage symmetric":  {KeyUsage: types.KeyUsageTypeSignVerify},
		"description too long":  {Description: aws.String(strings.Repeat("d", 8193))},
		"xks id without store":  {XksKeyId: aws.String("abc")},
	} {
		_, err := c.CreateKey(ctx, in)
		if err == nil {
			t.Errorf("%s: CreateKey succeeded", name)
		}
	}
	_, err := c.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String("cks-1234567890abcdef0")})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Tags: fiftyOneTags()})
	wantErr[*types.TagException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256})
	wantCode(t, err, "ValidationException")
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String("not json")})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(strings.Repeat("d", 8193))})
	wantCode(t, err, "ValidationException")
	keys, err := c.ListKeys(ctx, &kms.ListKeysInput{})
	if err != nil || len(keys.Keys) != 0 {
		t.Fatalf("rejected CreateKey calls left %d keys", len(keys.Keys))
	}

	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: make([]byte, 4097)})
	wantCode(t, err, "ValidationException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte{}})
	wantCode(t, err, "ValidationException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("1234abcd-12ab-34cd-56ef-1234567890ab"), Plaintext: []byte("x")})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("arn:aws:kms:us-east-1:" + e.Account), Plaintext: []byte("x")})
	wantErr[*types.InvalidArnException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), DryRun: aws.Bool(true)})
	wantErr[*types.DryRunOperationException](t, err)
	_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String("alias/whatever")})
	wantErr[*types.NotFoundException](t, err)
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:us-east-1:" + e.Account + ":key/" + *k.KeyMetadata.KeyId + "x")})
	wantErr[*types.NotFoundException](t, err)
}
