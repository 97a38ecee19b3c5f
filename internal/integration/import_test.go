package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
)

func opensslOrSkip(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed; install it to wrap key material outside keyhold")
	}
	return bin
}

func runOpenSSL(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// wrapWithOpenSSL wraps material for import the way AWS's developer guide
// shows, entirely outside keyhold: for RSA_AES_KEY_WRAP_* an ephemeral
// AES-256 key is OAEP-encrypted with `openssl pkeyutl` and the material is
// wrapped under it with `openssl enc -id-aes256-wrap-pad` (RFC 5649), the two
// concatenated; for RSAES_OAEP_* the material itself is OAEP-encrypted.
func wrapWithOpenSSL(t *testing.T, bin string, wrappingPub []byte, alg types.AlgorithmSpec, material []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(file("wrapping.der"), wrappingPub, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file("material.bin"), material, 0o600)
	md := "sha256"
	if strings.HasSuffix(string(alg), "SHA_1") {
		md = "sha1"
	}
	oaep := func(in, out string) {
		runOpenSSL(t, bin, "pkeyutl", "-encrypt", "-in", in, "-out", out, "-inkey", file("wrapping.der"), "-keyform", "DER", "-pubin",
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md)
	}
	if strings.HasPrefix(string(alg), "RSAES_OAEP") {
		oaep(file("material.bin"), file("wrapped.bin"))
		out, _ := os.ReadFile(file("wrapped.bin"))
		return out
	}
	runOpenSSL(t, bin, "rand", "-out", file("aes.bin"), "32")
	oaep(file("aes.bin"), file("aes.wrapped"))
	aesKey, _ := os.ReadFile(file("aes.bin"))
	runOpenSSL(t, bin, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6",
		"-in", file("material.bin"), "-out", file("material.wrapped"))
	a, _ := os.ReadFile(file("aes.wrapped"))
	b, _ := os.ReadFile(file("material.wrapped"))
	return append(a, b...)
}

// opensslKeyPair generates a private key with openssl genpkey and returns
// its PKCS#8 DER and its DER SubjectPublicKeyInfo, both written by openssl.
func opensslKeyPair(t *testing.T, bin string, genArgs ...string) (privDER, pubDER []byte) {
	t.Helper()
	dir := t.TempDir()
	pem := filepath.Join(dir, "key.pem")
	runOpenSSL(t, bin, append(append([]string{"genpkey"}, genArgs...), "-out", pem)...)
	runOpenSSL(t, bin, "pkcs8", "-topk8", "-nocrypt", "-in", pem, "-outform", "DER", "-out", filepath.Join(dir, "key.der"))
	runOpenSSL(t, bin, "pkey", "-in", pem, "-pubout", "-outform", "DER", "-out", filepath.Join(dir, "pub.der"))
	privDER, _ = os.ReadFile(filepath.Join(dir, "key.der"))
	pubDER, _ = os.ReadFile(filepath.Join(dir, "pub.der"))
	return privDER, pubDER
}

func importWith(t *testing.T, c *kms.Client, keyID *string, alg types.AlgorithmSpec, spec types.WrappingKeySpec, wrap func(pub []byte) []byte) (*kms.ImportKeyMaterialOutput, error) {
	t.Helper()
	p, err := c.GetParametersForImport(context.Background(), &kms.GetParametersForImportInput{KeyId: keyID, WrappingAlgorithm: alg, WrappingKeySpec: spec})
	if err != nil {
		t.Fatalf("GetParametersForImport(%s, %s): %v", alg, spec, err)
	}
	return c.ImportKeyMaterial(context.Background(), &kms.ImportKeyMaterialInput{KeyId: keyID, ImportToken: p.ImportToken,
		EncryptedKeyMaterial: wrap(p.PublicKey), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
}

// TestImportWrappedByOpenSSL imports key material of every kind AWS lets
// users import, wrapped outside keyhold by openssl with RSA_AES_KEY_WRAP_SHA_1
// and _SHA_256 (and RSAES_OAEP where the material fits), then checks the key
// works with exactly that material: the public key GetPublicKey returns is
// the one openssl derived from the private key, signatures verify, RSA
// ciphertexts made with the original public key decrypt, MACs match
// crypto/hmac and symmetric ciphertexts round-trip.
func TestImportWrappedByOpenSSL(t *testing.T) {
	bin := opensslOrSkip(t)
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	wrapAlgs := []types.AlgorithmSpec{types.AlgorithmSpecRsaAesKeyWrapSha1, types.AlgorithmSpecRsaAesKeyWrapSha256}
	wrapSpecs := []types.WrappingKeySpec{types.WrappingKeySpecRsa2048, types.WrappingKeySpecRsa3072}

	asym := []struct {
		spec    types.KeySpec
		usage   types.KeyUsageType
		gen     []string
		signAlg types.SigningAlgorithmSpec
	}{
		{types.KeySpecRsa2048, types.KeyUsageTypeSignVerify, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, types.SigningAlgorithmSpecRsassaPssSha256},
		{types.KeySpecRsa3072, types.KeyUsageTypeEncryptDecrypt, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"}, ""},
		{types.KeySpecRsa4096, types.KeyUsageTypeSignVerify, []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"}, types.SigningAlgorithmSpecRsassaPkcs1V15Sha512},
		{types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, types.SigningAlgorithmSpecEcdsaSha256},
		{types.KeySpecEccNistP384, types.KeyUsageTypeKeyAgreement, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}, ""},
		{types.KeySpecEccNistP521, types.KeyUsageTypeSignVerify, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"}, types.SigningAlgorithmSpecEcdsaSha512},
		{types.KeySpecEccSecgP256k1, types.KeyUsageTypeSignVerify, []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"}, types.SigningAlgorithmSpecEcdsaSha256},
		{types.KeySpecEccNistEdwards25519, types.KeyUsageTypeSignVerify, []string{"-algorithm", "ED25519"}, types.SigningAlgorithmSpecEd25519Sha512},
	}
	for i, a := range asym {
		alg, ws := wrapAlgs[i%2], wrapSpecs[(i/2)%2]
		t.Run(string(a.spec)+"/"+string(a.usage)+"/"+string(alg), func(t *testing.T) {
			priv, pub := opensslKeyPair(t, bin, a.gen...)
			k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: a.spec, KeyUsage: a.usage})
			if err != nil {
				t.Fatal(err)
			}
			id := k.KeyMetadata.KeyId
			if strings.HasPrefix(string(a.spec), "RSA") {
				// RSA private keys do not fit RSA-OAEP: AWS requires RSA_AES.
				_, err := importWith(t, c, id, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096, func(p []byte) []byte {
					return bytes.Repeat([]byte{1}, 512)
				})
				wantErr[*types.InvalidCiphertextException](t, err)
			}
			imp, err := importWith(t, c, id, alg, ws, func(p []byte) []byte { return wrapWithOpenSSL(t, bin, p, alg, priv) })
			if err != nil {
				t.Fatalf("ImportKeyMaterial: %v", err)
			}
			if len(aws.ToString(imp.KeyMaterialId)) != 64 {
				t.Fatalf("KeyMaterialId %q", aws.ToString(imp.KeyMaterialId))
			}
			gp, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: id})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gp.PublicKey, pub) {
				t.Fatalf("GetPublicKey is not openssl's public key of the imported material")
			}
			switch a.usage {
			case types.KeyUsageTypeSignVerify:
				msg := []byte("signed with imported material")
				s, err := c.Sign(ctx, &kms.SignInput{KeyId: id, Message: msg, SigningAlgorithm: a.signAlg})
				if err != nil {
					t.Fatal(err)
				}
				verifyOutside(t, a.spec, pub, a.signAlg, msg, s.Signature)
			case types.KeyUsageTypeEncryptDecrypt:
				rpub, _ := x509.ParsePKIXPublicKey(pub)
				ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, rpub.(*rsa.PublicKey), []byte("to the imported key"), nil)
				d, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: ct, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
				if err != nil || string(d.Plaintext) != "to the imported key" {
					t.Fatalf("Decrypt: %v", err)
				}
			case types.KeyUsageTypeKeyAgreement:
				_, peerPub := opensslKeyPair(t, bin, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
				ss, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: id, KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: peerPub})
				if err != nil || len(ss.SharedSecret) != 48 {
					t.Fatalf("DeriveSharedSecret: %v", err)
				}
			}
		})
	}

	// ML-DSA: openssl in this image predates ML-DSA, so circl makes the key
	// (PKCS#8 holding the seed); openssl still
	// does the wrapping.
	t.Run("ML_DSA_44/RSA_AES_KEY_WRAP_SHA_256", func(t *testing.T) {
		pk, sk, _ := mldsa44.GenerateKey(rand.Reader)
		priv, err := pki.MarshalPKIXPrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := pki.MarshalPKIXPublicKey(pk)
		k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecMlDsa44, KeyUsage: types.KeyUsageTypeSignVerify})
		alg := types.AlgorithmSpecRsaAesKeyWrapSha256
		if _, err := importWith(t, c, k.KeyMetadata.KeyId, alg, types.WrappingKeySpecRsa2048, func(p []byte) []byte { return wrapWithOpenSSL(t, bin, p, alg, priv) }); err != nil {
			t.Fatalf("ImportKeyMaterial: %v", err)
		}
		gp, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: k.KeyMetadata.KeyId})
		if !bytes.Equal(gp.PublicKey, pub) {
			t.Fatal("GetPublicKey is not the imported key's public key")
		}
		s, err := c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("pq"), SigningAlgorithm: types.SigningAlgorithmSpecMlDsaShake256})
		if err != nil || !mldsa44.Verify(pk, []byte("pq"), nil, s.Signature) {
			t.Fatalf("Sign with imported ML-DSA material: %v", err)
		}
	})

	// Symmetric and HMAC material with both families of wrapping algorithms.
	for i, alg := range []types.AlgorithmSpec{types.AlgorithmSpecRsaAesKeyWrapSha1, types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaesOaepSha1, types.AlgorithmSpecRsaesOaepSha256} {
		t.Run("SYMMETRIC_DEFAULT+HMAC_384/"+string(alg), func(t *testing.T) {
			material := make([]byte, 32)
			rand.Read(material)
			k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
			if _, err := importWith(t, c, k.KeyMetadata.KeyId, alg, wrapSpecs[i%2], func(p []byte) []byte { return wrapWithOpenSSL(t, bin, p, alg, material) }); err != nil {
				t.Fatalf("ImportKeyMaterial: %v", err)
			}
			enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("sym")})
			if err != nil {
				t.Fatal(err)
			}
			if d, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); err != nil || string(d.Plaintext) != "sym" {
				t.Fatalf("Decrypt: %v", err)
			}

			hmacKey := make([]byte, 48)
			rand.Read(hmacKey)
			hk, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecHmac384, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
			if _, err := importWith(t, c, hk.KeyMetadata.KeyId, alg, wrapSpecs[(i+1)%2], func(p []byte) []byte { return wrapWithOpenSSL(t, bin, p, alg, hmacKey) }); err != nil {
				t.Fatalf("ImportKeyMaterial (HMAC): %v", err)
			}
			m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: hk.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: types.MacAlgorithmSpecHmacSha384})
			if err != nil {
				t.Fatal(err)
			}
			want := hmac.New(sha512.New384, hmacKey)
			want.Write([]byte("m"))
			if !hmac.Equal(m.Mac, want.Sum(nil)) {
				t.Fatal("MAC with imported material differs from crypto/hmac")
			}
		})
	}

	// Material wrapped with one algorithm but imported under a token for the
	// other does not unwrap.
	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	material := make([]byte, 32)
	_, err := importWith(t, c, k.KeyMetadata.KeyId, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, func(p []byte) []byte {
		return wrapWithOpenSSL(t, bin, p, types.AlgorithmSpecRsaAesKeyWrapSha1, material)
	})
	wantErr[*types.InvalidCiphertextException](t, err)
}
