package integration

import (
	"bytes"
	"context"
	"crypto/sha3"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/cloudflare/circl/pki"
)

// TestMLDSAExternalMu signs a client-computed mu (MessageType EXTERNAL_MU)
// and checks the signature outside keyhold (circl, from the message);
// Verify from mu is refused with UnsupportedOperationException (see
// keyspec.errVerifyMu for why), Verify RAW of the message accepts it.
func TestMLDSAExternalMu(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	msg := bytes.Repeat([]byte("0123456789abcdef"), 250) // 4000 bytes, so RAW Verify is possible too
	for _, spec := range []types.KeySpec{types.KeySpecMlDsa44, types.KeySpecMlDsa65, types.KeySpecMlDsa87} {
		t.Run(string(spec), func(t *testing.T) {
			k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: types.KeyUsageTypeSignVerify})
			if err != nil {
				t.Fatal(err)
			}
			id := k.KeyMetadata.KeyId
			gp, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: id})
			pk, err := pki.UnmarshalPKIXPublicKey(gp.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := pk.MarshalBinary()
			// mu = SHAKE256(SHAKE256(pk, 64) || 0 || 0 || M, 64): FIPS 204
			// with an empty context, what AWS's guide has clients compute.
			h := sha3.NewSHAKE256()
			h.Write(sha3.SumSHAKE256(raw, 64))
			h.Write([]byte{0, 0})
			h.Write(msg)
			mu := make([]byte, 64)
			h.Read(mu)

			s, err := c.Sign(ctx, &kms.SignInput{KeyId: id, Message: mu, MessageType: types.MessageTypeExternalMu, SigningAlgorithm: types.SigningAlgorithmSpecMlDsaShake256})
			if err != nil {
				t.Fatalf("Sign(EXTERNAL_MU): %v", err)
			}
			if !pk.Scheme().Verify(pk, msg, s.Signature, nil) {
				t.Fatal("circl does not verify the signature of mu as a signature of the message")
			}
			if _, err := c.Verify(ctx, &kms.VerifyInput{KeyId: id, Message: msg, MessageType: types.MessageTypeRaw, Signature: s.Signature,
				SigningAlgorithm: types.SigningAlgorithmSpecMlDsaShake256}); err != nil {
				t.Fatalf("Verify(RAW) of the EXTERNAL_MU signature: %v", err)
			}
			_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: id, Message: mu, MessageType: types.MessageTypeExternalMu, Signature: s.Signature,
				SigningAlgorithm: types.SigningAlgorithmSpecMlDsaShake256})
			wantErr[*types.UnsupportedOperationException](t, err)
			_, err = c.Sign(ctx, &kms.SignInput{KeyId: id, Message: mu[:32], MessageType: types.MessageTypeExternalMu, SigningAlgorithm: types.SigningAlgorithmSpecMlDsaShake256})
			wantCode(t, err, "ValidationException")
		})
	}
	ec, _ := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	_, err := c.Sign(ctx, &kms.SignInput{KeyId: ec.KeyMetadata.KeyId, Message: make([]byte, 64), MessageType: types.MessageTypeExternalMu, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantCode(t, err, "ValidationException")
}
