package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/xks/xkstest"
)

// inRegion is a client of the same endpoint whose requests are signed for
// region (the one thing that picks the Region keyhold answers in).
func (e *env) inRegion(t *testing.T, region string) *kms.Client {
	t.Helper()
	return e.client(t, e.AccessKey, e.Secret, func(o *kms.Options) { o.Region = region })
}

// TestRegionsFromCredentialScope: one endpoint serves every Region; keys,
// aliases and grants belong to the Region they were made in, and ARNs name
// it.
func TestRegionsFromCredentialScope(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	east, west := e.KMS, e.inRegion(t, "eu-west-1")

	k, err := west.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("west")})
	if err != nil {
		t.Fatal(err)
	}
	md := k.KeyMetadata
	wantARN := "arn:aws:kms:eu-west-1:" + e.Account + ":key/" + *md.KeyId
	if *md.Arn != wantARN || md.MultiRegion == nil || *md.MultiRegion || md.MultiRegionConfiguration != nil {
		t.Fatalf("CreateKey in eu-west-1: %s multi-Region %v %+v; want %s, single-Region", *md.Arn, md.MultiRegion, md.MultiRegionConfiguration, wantARN)
	}
	// The key does not exist in another Region, by id or by ARN (AWS's
	// answer is the same: NotFoundException).
	_, err = east.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: md.KeyId})
	wantErr[*types.NotFoundException](t, err)
	_, err = east.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: md.Arn})
	wantErr[*types.NotFoundException](t, err)
	_, err = east.Encrypt(ctx, &kms.EncryptInput{KeyId: md.Arn, Plaintext: []byte("x")})
	wantErr[*types.NotFoundException](t, err)
	// ...and in its own Region it answers by either.
	if d, err := west.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: md.Arn}); err != nil || *d.KeyMetadata.Arn != wantARN {
		t.Fatalf("DescribeKey by ARN in its Region: %v", err)
	}
	ct, err := west.Encrypt(ctx, &kms.EncryptInput{KeyId: md.KeyId, Plaintext: []byte("secret")})
	if err != nil || *ct.KeyId != wantARN {
		t.Fatalf("Encrypt in eu-west-1: %v", err)
	}
	// A ciphertext of a single-Region key decrypts only in its Region.
	_, err = east.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob})
	wantErr[*types.InvalidCiphertextException](t, err)
	if pt, err := west.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.CiphertextBlob}); err != nil || string(pt.Plaintext) != "secret" || *pt.KeyId != wantARN {
		t.Fatalf("Decrypt in eu-west-1: %v", err)
	}

	// ListKeys lists the Region's keys only.
	eastKey, _ := east.CreateKey(ctx, &kms.CreateKeyInput{})
	for _, c := range []struct {
		client    *kms.Client
		region    string
		want, not string
	}{{east, "us-east-1", *eastKey.KeyMetadata.KeyId, *md.KeyId}, {west, "eu-west-1", *md.KeyId, *eastKey.KeyMetadata.KeyId}} {
		l, err := c.client.ListKeys(ctx, &kms.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, k := range l.Keys {
			if *k.KeyId == c.not {
				t.Fatalf("ListKeys in %s lists a key of another Region", c.region)
			}
			if *k.KeyId == c.want {
				found = true
				if !strings.HasPrefix(*k.KeyArn, "arn:aws:kms:"+c.region+":") {
					t.Fatalf("ListKeys in %s: ARN %s", c.region, *k.KeyArn)
				}
			}
		}
		if !found {
			t.Fatalf("ListKeys in %s misses its key", c.region)
		}
	}

	// Aliases are per Region: the same name in two Regions, each for its
	// own Region's key; an alias cannot name a key of another Region.
	for _, c := range []struct {
		client *kms.Client
		key    string
	}{{east, *eastKey.KeyMetadata.KeyId}, {west, *md.KeyId}} {
		if _, err := c.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app"), TargetKeyId: aws.String(c.key)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = east.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/cross"), TargetKeyId: md.Arn})
	wantErr[*types.NotFoundException](t, err)
	d, err := west.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/app")})
	if err != nil || *d.KeyMetadata.KeyId != *md.KeyId {
		t.Fatalf("alias/app in eu-west-1: %v", err)
	}
	as, err := west.ListAliases(ctx, &kms.ListAliasesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as.Aliases {
		if *a.AliasName == "alias/app" && *a.AliasArn != "arn:aws:kms:eu-west-1:"+e.Account+":alias/app" {
			t.Fatalf("alias ARN %s", *a.AliasArn)
		}
		if *a.AliasName == "alias/app" && *a.TargetKeyId != *md.KeyId {
			t.Fatalf("eu-west-1 lists us-east-1's alias target")
		}
	}
	_, err = east.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:eu-west-1:" + e.Account + ":alias/app")})
	wantErr[*types.NotFoundException](t, err)

	// Grants belong to the key of their Region.
	g, err := west.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: md.KeyId, GranteePrincipal: aws.String("arn:aws:iam::" + e.Account + ":root"),
		Operations: []types.GrantOperation{types.GrantOperationEncrypt}})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := west.ListGrants(ctx, &kms.ListGrantsInput{KeyId: md.KeyId})
	if err != nil || len(gl.Grants) != 1 || *gl.Grants[0].KeyId != wantARN {
		t.Fatalf("ListGrants in eu-west-1: %+v, %v", gl, err)
	}
	_, err = east.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: md.KeyId, GrantId: g.GrantId})
	wantErr[*types.NotFoundException](t, err)

	// AWS managed keys are per Region too.
	s3east, err := east.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/aws/s3")})
	if err != nil {
		t.Fatal(err)
	}
	s3west, err := west.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/aws/s3")})
	if err != nil {
		t.Fatal(err)
	}
	if *s3east.KeyMetadata.KeyId == *s3west.KeyMetadata.KeyId || !strings.Contains(*s3west.KeyMetadata.Arn, ":eu-west-1:") {
		t.Fatalf("alias/aws/s3: %s and %s", *s3east.KeyMetadata.Arn, *s3west.KeyMetadata.Arn)
	}
}

// TestCustomKeyStoresAreRegional: a custom key store exists only in the
// Region it was created in, and so do its keys.
func TestCustomKeyStoresAreRegional(t *testing.T) {
	ctx := context.Background()
	f := xkstest.New(t, xkstest.Options{Keys: []xkstest.Key{{ID: "good", Encrypt: true, Decrypt: true}}})
	e := startXKSKeyhold(t, trustFile(t, leafOf(t, f.Endpoint)))
	west := e.inRegion(t, "eu-west-1")
	id, err := e.createXKS(ctx, "regional", xksTarget{f.Endpoint, f.Path, f.AccessKeyID, f.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = west.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(id)})
	wantErr[*types.CustomKeyStoreNotFoundException](t, err)
	_, err = west.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreName: aws.String("regional")})
	wantErr[*types.CustomKeyStoreNotFoundException](t, err)
	if l, err := west.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{}); err != nil || len(l.CustomKeyStores) != 0 {
		t.Fatalf("eu-west-1 lists us-east-1's stores: %+v, %v", l, err)
	}
	_, err = west.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantErr[*types.CustomKeyStoreNotFoundException](t, err)
	_, err = west.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantErr[*types.CustomKeyStoreNotFoundException](t, err)
	e.mustConnect(t, id)
	_, err = west.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String(id), XksKeyId: aws.String("good")})
	wantErr[*types.CustomKeyStoreNotFoundException](t, err)
	k, err := e.createXKSKey(ctx, id, "good")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(*k.Arn, "arn:aws:kms:us-east-1:") {
		t.Fatalf("XKS key ARN %s", *k.Arn)
	}
	_, err = west.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	wantErr[*types.NotFoundException](t, err)
}
