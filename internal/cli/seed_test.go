package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/keyspec"
)

// Fixed key ids of the seed in TestSeedEverySpecAndOrigin.
const (
	seedHMAC     = "a0000000-0000-4000-8000-000000000001"
	seedRSASign  = "a0000000-0000-4000-8000-000000000002"
	seedRSAEnc   = "a0000000-0000-4000-8000-000000000003"
	seedP256     = "a0000000-0000-4000-8000-000000000004"
	seedECDH     = "a0000000-0000-4000-8000-000000000005"
	seedEd25519  = "a0000000-0000-4000-8000-000000000006"
	seedMLDSA    = "a0000000-0000-4000-8000-000000000007"
	seedImported = "a0000000-0000-4000-8000-000000000008"
	seedPending  = "a0000000-0000-4000-8000-000000000009"
	seedK256     = "a0000000-0000-4000-8000-00000000000a"
)

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writeSeed(t *testing.T, keys []map[string]any) string {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{"Keys": keys}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSeedEverySpecAndOrigin seeds keys of every kind a seed can hold, with
// material made by the standard library (or, for ML-DSA and secp256k1,
// keyhold's keyspec generator), on two fresh data directories: each
// verifies the other's signatures, decrypts the other's ciphertexts, and
// computes the same MACs and shared secrets, which also match what the
// material computes locally.
func TestSeedEverySpecAndOrigin(t *testing.T) {
	hmacKey := make([]byte, 40) // HMAC_256 accepts 32 to 64 bytes
	rand.Read(hmacKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecdhKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	mldsa, err := keyspec.Generate("ML_DSA_44")
	if err != nil {
		t.Fatal(err)
	}
	k256, err := keyspec.Generate("ECC_SECG_P256K1")
	if err != nil {
		t.Fatal(err)
	}
	imported := make([]byte, 32)
	rand.Read(imported)
	validTo := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	b64 := base64.StdEncoding.EncodeToString
	edPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, edKey)}))
	seed := writeSeed(t, []map[string]any{
		{"KeyId": seedHMAC, "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "KeyMaterial": b64(hmacKey)},
		{"KeyId": seedRSASign, "KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": b64(pkcs8(t, rsaKey))},
		{"KeyId": seedRSAEnc, "KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT", "KeyMaterial": b64(pkcs8(t, rsaKey))},
		{"KeyId": seedP256, "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": b64(pkcs8(t, p256))},
		{"KeyId": seedECDH, "KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT", "KeyMaterial": b64(pkcs8(t, ecdhKey))},
		{"KeyId": seedEd25519, "KeySpec": "ECC_NIST_EDWARDS25519", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": edPEM},
		{"KeyId": seedMLDSA, "KeySpec": "ML_DSA_44", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": b64(mldsa)},
		{"KeyId": seedK256, "KeySpec": "ECC_SECG_P256K1", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": b64(k256)},
		{"KeyId": seedImported, "Origin": "EXTERNAL", "KeyMaterial": b64(imported), "ValidTo": validTo.Format(time.RFC3339),
			"Aliases": []string{"alias/imported"}},
		{"KeyId": seedPending, "Origin": "EXTERNAL", "Description": "waits for ImportKeyMaterial"},
	})
	ctx := context.Background()
	a := serveInProcess(t, "--seed", seed, "--account-id", "111122223333")
	b := serveInProcess(t, "--seed", seed, "--account-id", "111122223333")
	if strings.Contains(a.log.String(), b64(hmacKey)) || strings.Contains(a.log.String(), b64(imported)) {
		t.Fatal("the log holds seeded key material")
	}

	// The same public keys, and the ones of the given material.
	for id, pub := range map[string]crypto.PublicKey{seedRSASign: &rsaKey.PublicKey, seedP256: &p256.PublicKey,
		seedECDH: &ecdhKey.PublicKey, seedEd25519: edKey.Public()} {
		want, _ := x509.MarshalPKIXPublicKey(pub)
		for _, s := range []*served{a, b} {
			out, err := s.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)})
			if err != nil || !bytes.Equal(out.PublicKey, want) {
				t.Fatalf("GetPublicKey %s: %v (equal %v)", id, err, err == nil && bytes.Equal(out.PublicKey, want))
			}
		}
	}

	// HMAC: both compute the MAC of the given key.
	msg := []byte("seeded on two data directories")
	local := hmac.New(sha256.New, hmacKey)
	local.Write(msg)
	for _, s := range []*served{a, b} {
		out, err := s.client.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: aws.String(seedHMAC), Message: msg, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
		if err != nil || !hmac.Equal(out.Mac, local.Sum(nil)) {
			t.Fatalf("GenerateMac: %v", err)
		}
	}

	// Signatures made by one verify on the other (and, for RSA and P-256,
	// with the standard library).
	digest := sha256.Sum256(msg)
	for _, tc := range []struct {
		id  string
		alg types.SigningAlgorithmSpec
	}{
		{seedRSASign, types.SigningAlgorithmSpecRsassaPssSha256}, {seedP256, types.SigningAlgorithmSpecEcdsaSha256},
		{seedEd25519, types.SigningAlgorithmSpecEd25519Sha512}, {seedMLDSA, types.SigningAlgorithmSpecMlDsaShake256},
		{seedK256, types.SigningAlgorithmSpecEcdsaSha256},
	} {
		for _, pair := range [][2]*served{{a, b}, {b, a}} {
			sig, err := pair[0].client.Sign(ctx, &kms.SignInput{KeyId: aws.String(tc.id), Message: msg, SigningAlgorithm: tc.alg})
			if err != nil {
				t.Fatalf("Sign %s: %v", tc.id, err)
			}
			v, err := pair[1].client.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(tc.id), Message: msg, Signature: sig.Signature, SigningAlgorithm: tc.alg})
			if err != nil || !v.SignatureValid {
				t.Fatalf("Verify %s on the other directory: %v", tc.id, err)
			}
			switch tc.id {
			case seedRSASign:
				if err := rsa.VerifyPSS(&rsaKey.PublicKey, crypto.SHA256, digest[:], sig.Signature, nil); err != nil {
					t.Fatalf("RSA signature does not verify with the seeded key: %v", err)
				}
			case seedP256:
				if !ecdsa.VerifyASN1(&p256.PublicKey, digest[:], sig.Signature) {
					t.Fatal("P-256 signature does not verify with the seeded key")
				}
			}
		}
	}

	// RSA encryption: a ciphertext of one decrypts on the other, and one
	// made locally with the public key decrypts too.
	enc, err := a.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(seedRSAEnc), Plaintext: msg, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := b.client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(seedRSAEnc), CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	if err != nil || !bytes.Equal(dec.Plaintext, msg) {
		t.Fatalf("RSA decrypt on the other directory: %v", err)
	}

	// ECDH: both derive the secret the given key derives.
	peer, _ := ecdh.P256().GenerateKey(rand.Reader)
	mine, _ := ecdhKey.ECDH()
	want, _ := mine.ECDH(peer.PublicKey())
	peerDER, _ := x509.MarshalPKIXPublicKey(mustECDSA(t, peer))
	for _, s := range []*served{a, b} {
		out, err := s.client.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: aws.String(seedECDH),
			KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: peerDER})
		if err != nil || !bytes.Equal(out.SharedSecret, want) {
			t.Fatalf("DeriveSharedSecret: %v", err)
		}
	}

	// Imported (EXTERNAL) material with an expiration, as AWS reports it.
	for _, s := range []*served{a, b} {
		d, err := s.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/imported")})
		if err != nil {
			t.Fatal(err)
		}
		m := d.KeyMetadata
		if m.Origin != types.OriginTypeExternal || m.KeyState != types.KeyStateEnabled || m.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires ||
			m.ValidTo == nil || !m.ValidTo.Equal(validTo) {
			t.Fatalf("imported key: %+v", m)
		}
		p, err := s.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(seedPending)})
		if err != nil || p.KeyMetadata.KeyState != types.KeyStatePendingImport || p.KeyMetadata.Origin != types.OriginTypeExternal {
			t.Fatalf("pending key: %v %+v", err, p)
		}
		if _, err := s.client.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(seedPending),
			WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048}); err != nil {
			t.Fatalf("GetParametersForImport of the pending seeded key: %v", err)
		}
	}
	for _, pair := range [][2]*served{{a, b}, {b, a}} {
		enc, err := pair[0].client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/imported"), Plaintext: msg})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := pair[1].client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err != nil || !bytes.Equal(dec.Plaintext, msg) || *dec.KeyId != "arn:aws:kms:us-east-1:111122223333:key/"+seedImported {
			t.Fatalf("imported key cross decrypt: %v", err)
		}
	}
}

func mustECDSA(t *testing.T, k *ecdh.PrivateKey) *ecdsa.PublicKey {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ecdsa.PublicKey)
}

// TestSeedRefused: a seed that cannot be applied stops the start with a
// message naming the file and the key, never quoting the material.
func TestSeedRefused(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p256B64 := base64.StdEncoding.EncodeToString(pkcs8(t, p256))
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	full := base64.StdEncoding.EncodeToString(make([]byte, 32))
	id := "b0000000-0000-4000-8000-000000000001"
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		key  map[string]any
		want string
	}{
		{map[string]any{"KeyId": id, "Origin": "AWS_CLOUDHSM"}, "Origin AWS_CLOUDHSM cannot be seeded"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL_KEY_STORE"}, "Origin EXTERNAL_KEY_STORE cannot be seeded"},
		{map[string]any{"KeyId": id, "Origin": "ELSEWHERE"}, "unknown Origin ELSEWHERE"},
		{map[string]any{"KeyId": id, "KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": p256B64}, "not a valid RSA_2048 private key"},
		{map[string]any{"KeyId": id, "KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY", "KeyMaterial": p256B64}, "not a valid ECC_NIST_P384 private key"},
		{map[string]any{"KeyId": id, "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "KeyMaterial": short}, "must be 32 to 64 bytes"},
		{map[string]any{"KeyId": id, "KeyMaterial": short}, "must be 32 to 32 bytes"},
		{map[string]any{"KeyId": id, "KeyMaterial": "!!!"}, "not base64"},
		{map[string]any{"KeyId": id, "KeyMaterial": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"}, `one "PRIVATE KEY" block`},
		{map[string]any{"KeyId": id, "ValidTo": future}, "need Origin EXTERNAL and KeyMaterial"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL", "ValidTo": future}, "need Origin EXTERNAL and KeyMaterial"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL", "KeyMaterial": full, "ValidTo": past}, "must be in the future"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL", "KeyMaterial": full, "ValidTo": "tomorrow"}, "want RFC 3339"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL", "KeyMaterial": full, "ExpirationModel": "KEY_MATERIAL_EXPIRES"}, "a ValidTo date is required"},
		{map[string]any{"KeyId": id, "Origin": "EXTERNAL", "Enabled": false}, "PendingImport and cannot be disabled"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			seed := writeSeed(t, []map[string]any{tc.key})
			code, _, errOut := run("serve", "--seed", seed, "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0")
			if code != 1 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, seed) || !strings.Contains(errOut, id) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
			if strings.Contains(errOut, p256B64[20:60]) {
				t.Fatalf("the error quotes the key material: %s", errOut)
			}
		})
	}
}
