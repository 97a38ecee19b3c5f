// Package example is a module outside keyhold that uses keyholdtest the
// way a user's tests would: through a replace directive, with only the
// public API.
package example

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/keyholdtest"
)

func TestEnvelopeEncryption(t *testing.T) {
	srv := keyholdtest.New(t, keyholdtest.WithAccountID("123456789012"))
	client := kms.NewFromConfig(srv.Config)
	ctx := context.Background()
	key, err := client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("envelope")})
	if err != nil {
		t.Fatal(err)
	}
	if got := *key.KeyMetadata.Arn; got[:len("arn:aws:kms:us-east-1:123456789012:key/")] != "arn:aws:kms:us-east-1:123456789012:key/" {
		t.Fatalf("key ARN %s", got)
	}
	dk, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256,
		EncryptionContext: map[string]string{"app": "example"}})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: map[string]string{"app": "example"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(dec.Plaintext) != string(dk.Plaintext) {
		t.Fatal("the data key did not round-trip")
	}
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob})
	var bad *types.InvalidCiphertextException
	if !errors.As(err, &bad) {
		t.Fatalf("Decrypt without the encryption context: %v, want InvalidCiphertextException", err)
	}
}

func TestTwoServersAreIndependent(t *testing.T) {
	a, b := keyholdtest.New(t), keyholdtest.New(t)
	ctx := context.Background()
	key, err := kms.NewFromConfig(a.Config).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kms.NewFromConfig(b.Config).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: key.KeyMetadata.KeyId})
	var nf *types.NotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("the second server knows the first one's key: %v", err)
	}
}
