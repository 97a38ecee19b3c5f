package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"regexp"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

var mrkID = regexp.MustCompile(`^mrk-[0-9a-f]{32}$`)

// wantMultiRegion checks a key's MultiRegionConfiguration.
func wantMultiRegion(t *testing.T, md *types.KeyMetadata, typ types.MultiRegionKeyType, account, primary string, replicas ...string) {
	t.Helper()
	arn := func(r string) string { return "arn:aws:kms:" + r + ":" + account + ":key/" + *md.KeyId }
	mr := md.MultiRegionConfiguration
	if md.MultiRegion == nil || !*md.MultiRegion || mr == nil {
		t.Fatalf("%s: not a multi-Region key: %+v", *md.Arn, md)
	}
	if mr.MultiRegionKeyType != typ || *mr.PrimaryKey.Region != primary || *mr.PrimaryKey.Arn != arn(primary) {
		t.Fatalf("%s: type %s primary %s %s; want %s, %s", *md.Arn, mr.MultiRegionKeyType, *mr.PrimaryKey.Region, *mr.PrimaryKey.Arn, typ, primary)
	}
	var got []string
	for _, r := range mr.ReplicaKeys {
		if *r.Arn != arn(*r.Region) {
			t.Fatalf("replica ARN %s in %s", *r.Arn, *r.Region)
		}
		got = append(got, *r.Region)
	}
	slices.Sort(replicas)
	if !slices.Equal(got, replicas) {
		t.Fatalf("%s: replicas %v, want %v", *md.Arn, got, replicas)
	}
}

func describe(t *testing.T, c *kms.Client, id string) *types.KeyMetadata {
	t.Helper()
	d, err := c.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return d.KeyMetadata
}

// TestMultiRegionKeys: a multi-Region primary in us-east-1 replicated to
// eu-west-1 through one endpoint, with clients signing for each Region.
func TestMultiRegionKeys(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	east, west, south := e.KMS, e.inRegion(t, "eu-west-1"), e.inRegion(t, "ap-southeast-2")

	k, err := east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Description: aws.String("primary"),
		Tags: []types.Tag{{TagKey: aws.String("side"), TagValue: aws.String("east")}}})
	if err != nil {
		t.Fatal(err)
	}
	id := *k.KeyMetadata.KeyId
	if !mrkID.MatchString(id) {
		t.Fatalf("multi-Region key id %q, want mrk- and 32 hex digits", id)
	}
	wantMultiRegion(t, k.KeyMetadata, types.MultiRegionKeyTypePrimary, e.Account, "us-east-1")
	ct, err := east.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("before"), EncryptionContext: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}

	// ReplicateKey is called in the primary's Region.
	rep, err := east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("eu-west-1"),
		Description: aws.String("replica"), Tags: []types.Tag{{TagKey: aws.String("side"), TagValue: aws.String("west")}}})
	if err != nil {
		t.Fatal(err)
	}
	rm := rep.ReplicaKeyMetadata
	if *rm.Arn != "arn:aws:kms:eu-west-1:"+e.Account+":key/"+id || rm.KeyState != types.KeyStateCreating || *rm.Description != "replica" {
		t.Fatalf("ReplicateKey: %s %s %q", *rm.Arn, rm.KeyState, *rm.Description)
	}
	wantMultiRegion(t, rm, types.MultiRegionKeyTypeReplica, e.Account, "us-east-1", "eu-west-1")
	if len(rep.ReplicaTags) != 1 || *rep.ReplicaTags[0].TagValue != "west" || *rep.ReplicaPolicy == "" {
		t.Fatalf("ReplicateKey tags %+v policy %q", rep.ReplicaTags, *rep.ReplicaPolicy)
	}
	wm := describe(t, west, id)
	if wm.KeyState != types.KeyStateEnabled || !wm.Enabled || wm.KeySpec != types.KeySpecSymmetricDefault || *wm.Description != "replica" {
		t.Fatalf("replica: %s %v %s", wm.KeyState, wm.Enabled, wm.KeySpec)
	}
	wantMultiRegion(t, wm, types.MultiRegionKeyTypeReplica, e.Account, "us-east-1", "eu-west-1")
	em := describe(t, east, id)
	wantMultiRegion(t, em, types.MultiRegionKeyTypePrimary, e.Account, "us-east-1", "eu-west-1")
	if *em.CurrentKeyMaterialId != *wm.CurrentKeyMaterialId {
		t.Fatal("primary and replica report different key material")
	}

	// The same key material: ciphertexts cross Regions both ways.
	pt, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}})
	if err != nil || string(pt.Plaintext) != "before" || *pt.KeyId != *wm.Arn {
		t.Fatalf("primary's ciphertext in the replica Region: %v", err)
	}
	back, err := west.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("arn:aws:kms:eu-west-1:" + e.Account + ":key/" + id), Plaintext: []byte("from west")})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := east.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob, KeyId: aws.String(id)}); err != nil || string(pt.Plaintext) != "from west" {
		t.Fatalf("replica's ciphertext in the primary Region: %v", err)
	}
	dk, err := west.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := east.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob}); err != nil || !bytes.Equal(pt.Plaintext, dk.Plaintext) {
		t.Fatalf("replica's data key in the primary Region: %v", err)
	}
	// ...but not in a Region without a replica.
	_, err = south.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob})
	wantErr[*types.InvalidCiphertextException](t, err)

	// Refusals, with AWS's exceptions.
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("eu-west-1")})
	wantErr[*types.AlreadyExistsException](t, err)
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("us-east-1")})
	wantErr[*types.AlreadyExistsException](t, err)
	_, err = west.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("ap-southeast-2")})
	wantErr[*types.UnsupportedOperationException](t, err) // a replica is not replicated
	_, err = west.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: em.Arn, ReplicaRegion: aws.String("ap-southeast-2")})
	wantErr[*types.NotFoundException](t, err) // the primary's ARN names nothing in eu-west-1
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("Mars-1")})
	wantCode(t, err, "ValidationException")
	single, _ := east.CreateKey(ctx, &kms.CreateKeyInput{})
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: single.KeyMetadata.KeyId, ReplicaRegion: aws.String("eu-west-1")})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("ap-southeast-2"),
		Tags: []types.Tag{{TagKey: aws.String("aws:reserved"), TagValue: aws.String("x")}}})
	wantErr[*types.TagException](t, err)
	_, err = east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("ap-southeast-2"), Policy: aws.String("{not json")})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	if _, err := south.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)}); err == nil {
		t.Fatal("a refused ReplicateKey left a replica behind")
	}

	// Independent properties: state, description, tags, aliases, policy, grants.
	if _, err := west.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if describe(t, east, id).KeyState != types.KeyStateEnabled {
		t.Fatal("disabling the replica disabled the primary")
	}
	_, err = west.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantErr[*types.DisabledException](t, err)
	if _, err := west.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	tl, _ := east.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: aws.String(id)})
	if len(tl.Tags) != 1 || *tl.Tags[0].TagValue != "east" {
		t.Fatalf("primary's tags %+v", tl.Tags)
	}
	if _, err := west.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/mrk"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = east.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/mrk")})
	wantErr[*types.NotFoundException](t, err)
	lockedDown := `{"Version":"2012-10-17","Statement":[{"Sid":"root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},` +
		`{"Sid":"no decrypt here","Effect":"Deny","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}]}`
	if _, err := west.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(lockedDown)}); err != nil {
		t.Fatal(err)
	}
	_, err = west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob})
	wantCode(t, err, "AccessDeniedException")
	if _, err := east.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob}); err != nil {
		t.Fatalf("the replica's policy applied to the primary: %v", err)
	}
	if _, err := west.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: rep.ReplicaPolicy}); err != nil {
		t.Fatal(err)
	}
	g, err := west.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String(id), GranteePrincipal: aws.String("arn:aws:iam::" + e.Account + ":root"),
		Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	if gl, _ := east.ListGrants(ctx, &kms.ListGrantsInput{KeyId: aws.String(id)}); len(gl.Grants) != 0 {
		t.Fatalf("the replica's grant is listed on the primary: %+v", gl.Grants)
	}
	// A grant token of an mrk- key works (and names the key of its Region).
	if _, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob, GrantTokens: []string{*g.GrantToken}}); err != nil {
		t.Fatalf("Decrypt with the replica's grant token: %v", err)
	}
	_, err = east.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken})
	wantErr[*types.NotFoundException](t, err)
	if _, err := west.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}); err != nil {
		t.Fatalf("RetireGrant by token in the replica's Region: %v", err)
	}

	// Shared properties: rotation is set on the primary and reaches the
	// replica; new material decrypts in both Regions.
	_, err = west.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id)})
	wantErr[*types.UnsupportedOperationException](t, err)
	if _, err := east.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: aws.String(id), RotationPeriodInDays: aws.Int32(180)}); err != nil {
		t.Fatal(err)
	}
	rs, err := west.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)})
	if err != nil || !rs.KeyRotationEnabled || *rs.RotationPeriodInDays != 180 || *rs.KeyId != *wm.Arn {
		t.Fatalf("replica's rotation status %+v, %v", rs, err)
	}
	_, err = west.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(id)})
	wantErr[*types.UnsupportedOperationException](t, err)
	if _, err := east.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	em, wm = describe(t, east, id), describe(t, west, id)
	if *em.CurrentKeyMaterialId == *k.KeyMetadata.CurrentKeyMaterialId || *em.CurrentKeyMaterialId != *wm.CurrentKeyMaterialId {
		t.Fatalf("after rotation: primary material %s, replica %s", *em.CurrentKeyMaterialId, *wm.CurrentKeyMaterialId)
	}
	rotated, err := east.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("rotated")})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob, EncryptionContext: map[string]string{"a": "b"}}); err != nil || string(pt.Plaintext) != "before" {
		t.Fatalf("the material from before the rotation, in the replica: %v", err)
	}
	if pt, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: rotated.CiphertextBlob}); err != nil || string(pt.Plaintext) != "rotated" {
		t.Fatalf("new material in the replica: %v", err)
	}

	// UpdatePrimaryRegion: the replica becomes the primary, everywhere.
	_, err = east.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: aws.String(id), PrimaryRegion: aws.String("ap-southeast-2")})
	wantErr[*types.NotFoundException](t, err)
	_, err = west.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: aws.String(id), PrimaryRegion: aws.String("us-east-1")})
	wantErr[*types.UnsupportedOperationException](t, err) // called on a replica
	_, err = east.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: single.KeyMetadata.KeyId, PrimaryRegion: aws.String("eu-west-1")})
	wantErr[*types.UnsupportedOperationException](t, err)
	if _, err := east.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: aws.String(id), PrimaryRegion: aws.String("eu-west-1")}); err != nil {
		t.Fatal(err)
	}
	wantMultiRegion(t, describe(t, east, id), types.MultiRegionKeyTypeReplica, e.Account, "eu-west-1", "us-east-1")
	wantMultiRegion(t, describe(t, west, id), types.MultiRegionKeyTypePrimary, e.Account, "eu-west-1", "us-east-1")
	_, err = east.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: aws.String(id)})
	wantErr[*types.UnsupportedOperationException](t, err)
	if _, err := west.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if rs, _ := east.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: aws.String(id)}); rs.KeyRotationEnabled {
		t.Fatal("rotation disabled on the new primary is still on at the replica")
	}
	// The new primary replicates; the replica list grows on every key.
	if _, err := west.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("ap-southeast-2")}); err != nil {
		t.Fatal(err)
	}
	wantMultiRegion(t, describe(t, east, id), types.MultiRegionKeyTypeReplica, e.Account, "eu-west-1", "us-east-1", "ap-southeast-2")
	if pt, err := south.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: rotated.CiphertextBlob}); err != nil || string(pt.Plaintext) != "rotated" {
		t.Fatalf("the third Region's replica: %v", err)
	}
	// The default policy of a replica created without one.
	if p, err := south.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)}); err != nil || !bytes.Contains([]byte(*p.Policy), []byte(":root")) {
		t.Fatalf("replica's default policy: %v", err)
	}

	// Deleting the primary waits for its replicas (PendingReplicaDeletion).
	sk, err := west.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatal(err)
	}
	if sk.KeyState != types.KeyStatePendingReplicaDeletion || sk.DeletionDate != nil || *sk.PendingWindowInDays != 7 {
		t.Fatalf("ScheduleKeyDeletion of a primary with replicas: %s %v %d", sk.KeyState, sk.DeletionDate, *sk.PendingWindowInDays)
	}
	pm := describe(t, west, id)
	if pm.KeyState != types.KeyStatePendingReplicaDeletion || pm.Enabled || pm.PendingDeletionWindowInDays == nil || *pm.PendingDeletionWindowInDays != 7 {
		t.Fatalf("primary pending replica deletion: %+v", pm)
	}
	_, err = west.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = west.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: aws.String(id), ReplicaRegion: aws.String("us-west-2")})
	wantErr[*types.KMSInvalidStateException](t, err)
	if pt, err := east.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: rotated.CiphertextBlob}); err != nil || string(pt.Plaintext) != "rotated" {
		t.Fatalf("a replica while its primary waits: %v", err)
	}
	if _, err := west.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if describe(t, west, id).KeyState != types.KeyStateDisabled {
		t.Fatal("cancelled primary is not Disabled")
	}
	rsk, err := east.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
	if err != nil || rsk.KeyState != types.KeyStatePendingDeletion || rsk.DeletionDate == nil {
		t.Fatalf("ScheduleKeyDeletion of a replica: %+v, %v", rsk, err)
	}
}

// TestMultiRegionKeyTypes: asymmetric, HMAC and imported multi-Region
// keys, and the refusal in custom key stores.
func TestMultiRegionKeyTypes(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	east, west := e.KMS, e.inRegion(t, "eu-central-1")
	replicate := func(id *string) {
		t.Helper()
		if _, err := east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: id, ReplicaRegion: aws.String("eu-central-1")}); err != nil {
			t.Fatal(err)
		}
	}

	// Signing: a signature from the primary verifies at the replica, and
	// both Regions give the same public key.
	sig, err := east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	replicate(sig.KeyMetadata.KeyId)
	s, err := east.Sign(ctx, &kms.SignInput{KeyId: sig.KeyMetadata.KeyId, Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		t.Fatal(err)
	}
	v, err := west.Verify(ctx, &kms.VerifyInput{KeyId: sig.KeyMetadata.KeyId, Message: []byte("m"), Signature: s.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil || !v.SignatureValid {
		t.Fatalf("primary's signature at the replica: %v", err)
	}
	pe, _ := east.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sig.KeyMetadata.KeyId})
	pw, err := west.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sig.KeyMetadata.KeyId})
	if err != nil || !bytes.Equal(pe.PublicKey, pw.PublicKey) {
		t.Fatalf("public keys differ across Regions: %v", err)
	}
	verifyOutside(t, types.KeySpecEccNistP256, pw.PublicKey, types.SigningAlgorithmSpecEcdsaSha256, []byte("m"), s.Signature)

	// RSA encryption: the replica decrypts what the primary's public key encrypted.
	rsaKey, err := east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	replicate(rsaKey.KeyMetadata.KeyId)
	rct, err := east.Encrypt(ctx, &kms.EncryptInput{KeyId: rsaKey.KeyMetadata.KeyId, Plaintext: []byte("rsa"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := west.Decrypt(ctx, &kms.DecryptInput{KeyId: rsaKey.KeyMetadata.KeyId, CiphertextBlob: rct.CiphertextBlob,
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256}); err != nil || string(pt.Plaintext) != "rsa" {
		t.Fatalf("RSA ciphertext at the replica: %v", err)
	}

	// HMAC: a MAC from the replica verifies at the primary.
	mac, err := east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	if err != nil {
		t.Fatal(err)
	}
	replicate(mac.KeyMetadata.KeyId)
	m, err := west.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: mac.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	if err != nil {
		t.Fatal(err)
	}
	if vm, err := east.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: mac.KeyMetadata.KeyId, Message: []byte("m"), Mac: m.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha256}); err != nil || !vm.MacValid {
		t.Fatalf("replica's MAC at the primary: %v", err)
	}

	// Imported material: the replica starts PendingImport and takes only
	// the material imported into the primary.
	ext, err := east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeExternal})
	if err != nil || ext.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("EXTERNAL multi-Region key: %+v, %v", ext, err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	tok, wrapped := wrapForImport(t, east, ext.KeyMetadata.KeyId, material)
	if _, err := east.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ext.KeyMetadata.KeyId, ImportToken: tok, EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}); err != nil {
		t.Fatal(err)
	}
	r, err := east.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: ext.KeyMetadata.KeyId, ReplicaRegion: aws.String("eu-central-1")})
	if err != nil {
		t.Fatal(err)
	}
	if r.ReplicaKeyMetadata.Origin != types.OriginTypeExternal || describe(t, west, *ext.KeyMetadata.KeyId).KeyState != types.KeyStatePendingImport {
		t.Fatalf("replica of an imported key: %+v", r.ReplicaKeyMetadata)
	}
	other := make([]byte, 32)
	rand.Read(other)
	tok, wrapped = wrapForImport(t, west, ext.KeyMetadata.KeyId, other)
	_, err = west.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ext.KeyMetadata.KeyId, ImportToken: tok, EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	wantErr[*types.IncorrectKeyMaterialException](t, err)
	tok, wrapped = wrapForImport(t, west, ext.KeyMetadata.KeyId, material)
	if _, err := west.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ext.KeyMetadata.KeyId, ImportToken: tok, EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}); err != nil {
		t.Fatal(err)
	}
	ect, err := east.Encrypt(ctx, &kms.EncryptInput{KeyId: ext.KeyMetadata.KeyId, Plaintext: []byte("imported")})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ect.CiphertextBlob}); err != nil || string(pt.Plaintext) != "imported" {
		t.Fatalf("imported material across Regions: %v", err)
	}

	// No multi-Region keys in custom key stores, as AWS.
	_, err = east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String("cks-1234567890abcdef0")})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = east.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true), Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String("cks-1234567890abcdef0"), XksKeyId: aws.String("k")})
	wantErr[*types.UnsupportedOperationException](t, err)
}

// TestMultiRegionAuthorization: ReplicateKey is decided on the primary
// (kms:ReplicateKey, with kms:ReplicaRegion) and on creating a key in the
// replica Region (kms:CreateKey, with aws:RequestedRegion the replica's).
func TestMultiRegionAuthorization(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.iam(t, e.AccessKey, e.Secret)
	ak, sk := e.newUser(t, admin, "replicator", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"kms:*","Resource":"*"},
		{"Effect":"Deny","Action":"kms:CreateKey","Resource":"*","Condition":{"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}},
		{"Effect":"Deny","Action":"kms:ReplicateKey","Resource":"*","Condition":{"StringEquals":{"kms:ReplicaRegion":"eu-north-1"}}}]}`)
	c := e.client(t, ak, sk)
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: k.KeyMetadata.KeyId, ReplicaRegion: aws.String("eu-west-1")})
	wantCode(t, err, "AccessDeniedException")
	_, err = c.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: k.KeyMetadata.KeyId, ReplicaRegion: aws.String("eu-north-1")})
	wantCode(t, err, "AccessDeniedException")
	if _, err := e.inRegion(t, "eu-west-1").DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyMetadata.KeyId}); err == nil {
		t.Fatal("a denied ReplicateKey made a replica")
	}
	if _, err := c.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: k.KeyMetadata.KeyId, ReplicaRegion: aws.String("ap-south-1")}); err != nil {
		t.Fatalf("ReplicateKey the policy allows: %v", err)
	}
	// UpdatePrimaryRegion needs kms:UpdatePrimaryRegion on the replica too:
	// its own key policy (here one that no principal of this account is in)
	// decides.
	south := e.client(t, ak, sk, func(o *kms.Options) { o.Region = "ap-south-1" })
	otherAccount := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`
	if _, err := e.inRegion(t, "ap-south-1").PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyMetadata.KeyId, Policy: aws.String(otherAccount), BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Fatal(err)
	}
	_, err = c.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: k.KeyMetadata.KeyId, PrimaryRegion: aws.String("ap-south-1")})
	wantCode(t, err, "AccessDeniedException")
	_, err = south.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyMetadata.KeyId})
	wantCode(t, err, "AccessDeniedException")
	if d := describe(t, e.KMS, *k.KeyMetadata.KeyId); d.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypePrimary {
		t.Fatal("a denied UpdatePrimaryRegion moved the primary")
	}
}
