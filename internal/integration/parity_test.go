package integration

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
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/cloudflare/circl/pki"

	"github.com/keyhold/keyhold/internal/sigv4"
)

func TestEveryModelOperationIsServed(t *testing.T) {
	e := start(t)
	for _, op := range []string{"EnableKeyRotation", "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations",
		"Sign", "Verify", "GetPublicKey", "DeriveSharedSecret", "GenerateMac", "VerifyMac", "GenerateDataKeyPair",
		"GenerateDataKeyPairWithoutPlaintext", "GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial",
		"ReplicateKey", "UpdatePrimaryRegion", "GetKeyLastUsage"} {
		_, resp, _ := e.raw(t, &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}, "TrentService."+op, `{}`)
		if resp["__type"] == "UnknownOperationException" {
			t.Errorf("%s: UnknownOperationException", op)
		}
	}
}

func TestRotation(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: id})
	if err != nil || st.KeyRotationEnabled || st.RotationPeriodInDays != nil || st.NextRotationDate != nil {
		t.Fatalf("fresh key rotation status = %+v, %v", st, err)
	}
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: aws.Int32(89)})
	wantCode(t, err, "ValidationException")
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: aws.Int32(2561)})
	wantCode(t, err, "ValidationException")
	before := time.Now()
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id}); err != nil {
		t.Fatal(err)
	}
	st, err = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: id})
	if err != nil || !st.KeyRotationEnabled || *st.RotationPeriodInDays != 365 {
		t.Fatalf("status after enable = %+v, %v", st, err)
	}
	if d := st.NextRotationDate.Sub(before); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Fatalf("NextRotationDate %v is not a year out", st.NextRotationDate)
	}
	if _, err := c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: aws.Int32(90)}); err != nil {
		t.Fatal(err)
	}
	st, _ = c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: id})
	if *st.RotationPeriodInDays != 90 || st.NextRotationDate.Sub(before) > 91*24*time.Hour {
		t.Fatalf("status after period change = %+v", st)
	}

	old, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("before rotation")})
	if err != nil {
		t.Fatal(err)
	}
	d0, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id}); err != nil {
		t.Fatal(err)
	}
	d1, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if *d0.KeyMetadata.CurrentKeyMaterialId == *d1.KeyMetadata.CurrentKeyMaterialId {
		t.Fatal("CurrentKeyMaterialId did not change on rotation")
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "before rotation" || *dec.KeyMaterialId != *d0.KeyMetadata.CurrentKeyMaterialId {
		t.Fatalf("old ciphertext after rotation: %v", err)
	}
	nw, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("after")})
	dec, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: nw.CiphertextBlob})
	if err != nil || *dec.KeyMaterialId != *d1.KeyMetadata.CurrentKeyMaterialId {
		t.Fatalf("new ciphertext: %v", err)
	}
	rs, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id})
	if err != nil || len(rs.Rotations) != 1 || rs.Rotations[0].RotationType != types.RotationTypeOnDemand || *rs.Rotations[0].KeyMaterialId != *d1.KeyMetadata.CurrentKeyMaterialId {
		t.Fatalf("ListKeyRotations = %+v, %v", rs, err)
	}
	all, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	if err != nil || len(all.Rotations) != 2 || all.Rotations[1].KeyMaterialState != types.KeyMaterialStateCurrent || all.Rotations[0].KeyMaterialState != types.KeyMaterialStateNonCurrent {
		t.Fatalf("ListKeyRotations(ALL_KEY_MATERIAL) = %+v, %v", all, err)
	}
	page, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial, Limit: aws.Int32(1)})
	if err != nil || !page.Truncated || len(page.Rotations) != 1 {
		t.Fatalf("page 1 = %+v, %v", page, err)
	}
	page, err = c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: id, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial, Marker: page.NextMarker})
	if err != nil || page.Truncated || len(page.Rotations) != 1 {
		t.Fatalf("page 2 = %+v, %v", page, err)
	}
	for i := 1; i < 25; i++ { // AWS allows 25 on-demand rotations per key
		if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id}); err != nil {
			t.Fatalf("on-demand rotation %d: %v", i+1, err)
		}
	}
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id})
	wantErr[*types.LimitExceededException](t, err)
	if dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: old.CiphertextBlob}); err != nil || string(dec.Plaintext) != "before rotation" {
		t.Fatalf("first ciphertext after 25 rotations: %v", err)
	}

	if _, err := c.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: id}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: id}); st.KeyRotationEnabled {
		t.Fatal("rotation still enabled after DisableKeyRotation")
	}
	c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: id})
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id})
	wantErr[*types.DisabledException](t, err)

	rsa, _ := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: rsa.KeyMetadata.KeyId})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: rsa.KeyMetadata.KeyId})
	wantErr[*types.UnsupportedOperationException](t, err)
	if st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: rsa.KeyMetadata.KeyId}); err != nil || st.KeyRotationEnabled {
		t.Fatalf("asymmetric key rotation status = %+v, %v (want false, as AWS documents)", st, err)
	}
}

var signingCases = []struct {
	spec types.KeySpec
	algs []types.SigningAlgorithmSpec
}{
	{types.KeySpecRsa2048, []types.SigningAlgorithmSpec{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}},
	{types.KeySpecRsa3072, []types.SigningAlgorithmSpec{"RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_512"}},
	{types.KeySpecRsa4096, []types.SigningAlgorithmSpec{"RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256"}},
	{types.KeySpecEccNistP256, []types.SigningAlgorithmSpec{"ECDSA_SHA_256"}},
	{types.KeySpecEccNistP384, []types.SigningAlgorithmSpec{"ECDSA_SHA_384"}},
	{types.KeySpecEccNistP521, []types.SigningAlgorithmSpec{"ECDSA_SHA_512"}},
	{types.KeySpecEccSecgP256k1, []types.SigningAlgorithmSpec{"ECDSA_SHA_256"}},
	{types.KeySpecEccNistEdwards25519, []types.SigningAlgorithmSpec{"ED25519_SHA_512", "ED25519_PH_SHA_512"}},
	{types.KeySpecMlDsa44, []types.SigningAlgorithmSpec{"ML_DSA_SHAKE_256"}},
	{types.KeySpecMlDsa65, []types.SigningAlgorithmSpec{"ML_DSA_SHAKE_256"}},
	{types.KeySpecMlDsa87, []types.SigningAlgorithmSpec{"ML_DSA_SHAKE_256"}},
}

func hashOf(alg types.SigningAlgorithmSpec) crypto.Hash {
	s := string(alg)
	switch {
	case strings.HasSuffix(s, "256") && !strings.HasPrefix(s, "ML_DSA"):
		return crypto.SHA256
	case strings.HasSuffix(s, "384"):
		return crypto.SHA384
	}
	return crypto.SHA512
}

// verifyOutside checks a KMS signature against the GetPublicKey output with
// Go's crypto, circl's ML-DSA or openssl (secp256k1), never with keyhold.
func verifyOutside(t *testing.T, spec types.KeySpec, pubDER []byte, alg types.SigningAlgorithmSpec, msg, sig []byte) {
	t.Helper()
	switch spec {
	case types.KeySpecMlDsa44, types.KeySpecMlDsa65, types.KeySpecMlDsa87:
		pk, err := pki.UnmarshalPKIXPublicKey(pubDER)
		if err != nil {
			t.Fatal(err)
		}
		if !pk.Scheme().Verify(pk, msg, sig, nil) {
			t.Fatal("circl rejects the ML-DSA signature")
		}
		return
	case types.KeySpecEccSecgP256k1:
		opensslVerify(t, pubDER, "-sha256", msg, sig)
		return
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatalf("x509 cannot parse the public key: %v", err)
	}
	h := hashOf(alg)
	d := h.New()
	d.Write(msg)
	var ok bool
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if strings.Contains(string(alg), "PSS") {
			ok = rsa.VerifyPSS(p, h, d.Sum(nil), sig, &rsa.PSSOptions{SaltLength: h.Size()}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(p, h, d.Sum(nil), sig) == nil
		}
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(p, d.Sum(nil), sig)
	case ed25519.PublicKey:
		if alg == "ED25519_PH_SHA_512" {
			ok = ed25519.VerifyWithOptions(p, d.Sum(nil), sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
		} else {
			ok = ed25519.Verify(p, msg, sig)
		}
	}
	if !ok {
		t.Fatalf("Go's crypto rejects the %s signature", alg)
	}
}

func opensslVerify(t *testing.T, pubDER []byte, md string, msg, sig []byte) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	pubPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600)
	os.WriteFile(filepath.Join(dir, "msg"), msg, 0o600)
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o600)
	out, err := exec.Command(bin, "dgst", md, "-verify", pubPath, "-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "msg")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Fatalf("openssl: %v %s", err, out)
	}
}

func TestSignVerifyEveryKeySpec(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "it is about cryptography, the same on both stores")
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	msg := []byte("keyhold signs this for the SDK")
	for _, sc := range signingCases {
		t.Run(string(sc.spec), func(t *testing.T) {
			k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: sc.spec, KeyUsage: types.KeyUsageTypeSignVerify})
			if err != nil {
				t.Fatal(err)
			}
			md := k.KeyMetadata
			if len(md.SigningAlgorithms) == 0 || md.EncryptionAlgorithms != nil || md.KeyManager != types.KeyManagerTypeCustomer {
				t.Fatalf("metadata: %+v", md)
			}
			pk, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: md.KeyId})
			if err != nil || pk.KeySpec != sc.spec || pk.KeyUsage != types.KeyUsageTypeSignVerify || len(pk.SigningAlgorithms) != len(md.SigningAlgorithms) {
				t.Fatalf("GetPublicKey = %+v, %v", pk, err)
			}
			for _, alg := range sc.algs {
				mt, in := types.MessageTypeRaw, msg
				if alg == "ED25519_PH_SHA_512" {
					d := sha512.Sum512(msg)
					mt, in = types.MessageTypeDigest, d[:]
				}
				s, err := c.Sign(ctx, &kms.SignInput{KeyId: md.KeyId, Message: in, MessageType: mt, SigningAlgorithm: alg})
				if err != nil {
					t.Fatalf("%s: %v", alg, err)
				}
				verifyOutside(t, sc.spec, pk.PublicKey, alg, msg, s.Signature)
				v, err := c.Verify(ctx, &kms.VerifyInput{KeyId: md.KeyId, Message: in, MessageType: mt, Signature: s.Signature, SigningAlgorithm: alg})
				if err != nil || !v.SignatureValid {
					t.Fatalf("Verify %s: %v", alg, err)
				}
				bad := bytes.Clone(s.Signature)
				bad[len(bad)-1] ^= 1
				_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: md.KeyId, Message: in, MessageType: mt, Signature: bad, SigningAlgorithm: alg})
				wantErr[*types.KMSInvalidSignatureException](t, err)
			}
		})
	}

	// DIGEST messages, lengths and wrong algorithms.
	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	d := sha256.Sum256(msg)
	s, err := c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: d[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: "ECDSA_SHA_256"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Verify(ctx, &kms.VerifyInput{KeyId: k.KeyMetadata.KeyId, Message: msg, Signature: s.Signature, SigningAlgorithm: "ECDSA_SHA_256"}); err != nil || !v.SignatureValid {
		t.Fatalf("RAW verify of a DIGEST signature: %v", err)
	}
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: d[:31], MessageType: types.MessageTypeDigest, SigningAlgorithm: "ECDSA_SHA_256"})
	wantCode(t, err, "ValidationException")
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: "RSASSA_PSS_SHA_256"})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: make([]byte, 4097), SigningAlgorithm: "ECDSA_SHA_256"})
	wantCode(t, err, "ValidationException")
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: msg})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: "ECDSA_SHA_256", DryRun: aws.Bool(true)})
	wantErr[*types.DryRunOperationException](t, err)
	sym, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: sym.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sym.KeyMetadata.KeyId})
	wantErr[*types.UnsupportedOperationException](t, err)
	c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: k.KeyMetadata.KeyId})
	_, err = c.Sign(ctx, &kms.SignInput{KeyId: k.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
	wantErr[*types.DisabledException](t, err)

	u, err := c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: k.KeyMetadata.KeyId})
	if err != nil || u.KeyLastUsage == nil || u.KeyLastUsage.Operation != types.KeyLastUsageTrackingOperationVerify || u.TrackingStartDate == nil {
		t.Fatalf("GetKeyLastUsage = %+v, %v", u, err)
	}
	u, err = c.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: sym.KeyMetadata.KeyId})
	if err != nil || u.KeyLastUsage != nil || !u.KeyCreationDate.Equal(*sym.KeyMetadata.CreationDate) {
		t.Fatalf("GetKeyLastUsage of an unused key = %+v, %v", u, err)
	}
}

func TestRSAEncryption(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "it is about cryptography, the same on both stores")
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa3072, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	if len(k.KeyMetadata.EncryptionAlgorithms) != 2 {
		t.Fatalf("EncryptionAlgorithms = %v", k.KeyMetadata.EncryptionAlgorithms)
	}
	pk, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: id})
	pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []types.EncryptionAlgorithmSpec{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"} {
		h := crypto.SHA1
		if alg == "RSAES_OAEP_SHA_256" {
			h = crypto.SHA256
		}
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("rsa " + string(alg)), EncryptionAlgorithm: alg})
		if err != nil || enc.EncryptionAlgorithm != alg || len(enc.CiphertextBlob) != 384 {
			t.Fatalf("Encrypt %s: %+v, %v (want a raw 384-byte OAEP ciphertext)", alg, enc, err)
		}
		dec, err := c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: alg})
		if err != nil || string(dec.Plaintext) != "rsa "+string(alg) {
			t.Fatalf("Decrypt %s: %v", alg, err)
		}
		// Encrypted outside keyhold with the public key, decrypted inside.
		ct, _ := rsa.EncryptOAEP(h.New(), rand.Reader, pub.(*rsa.PublicKey), []byte("outside"), nil)
		dec, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: ct, EncryptionAlgorithm: alg})
		if err != nil || string(dec.Plaintext) != "outside" {
			t.Fatalf("Decrypt of an outside %s ciphertext: %v", alg, err)
		}
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: make([]byte, 319), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	wantCode(t, err, "ValidationException")
	_, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: make([]byte, 384), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	wantErr[*types.InvalidCiphertextException](t, err)
	_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256})
	wantErr[*types.InvalidKeyUsageException](t, err)

	// ReEncrypt from a symmetric key to the RSA key and back.
	sym, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	enc, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: sym.KeyMetadata.KeyId, Plaintext: []byte("moving")})
	re, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: id, DestinationEncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
	if err != nil || re.DestinationEncryptionAlgorithm != "RSAES_OAEP_SHA_256" || re.SourceEncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Fatalf("ReEncrypt to RSA: %+v, %v", re, err)
	}
	back, err := c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: re.CiphertextBlob, SourceKeyId: id, SourceEncryptionAlgorithm: "RSAES_OAEP_SHA_256",
		DestinationKeyId: sym.KeyMetadata.KeyId})
	if err != nil || back.SourceEncryptionAlgorithm != "RSAES_OAEP_SHA_256" {
		t.Fatalf("ReEncrypt from RSA: %+v, %v", back, err)
	}
	if dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob}); err != nil || string(dec.Plaintext) != "moving" {
		t.Fatalf("round trip through the RSA key: %v", err)
	}
	_, err = c.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: id})
	wantErr[*types.InvalidKeyUsageException](t, err)
}

func TestDeriveSharedSecret(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	for _, tc := range []struct {
		spec  types.KeySpec
		curve ecdh.Curve
	}{{types.KeySpecEccNistP256, ecdh.P256()}, {types.KeySpecEccNistP384, ecdh.P384()}, {types.KeySpecEccNistP521, ecdh.P521()}} {
		k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: tc.spec, KeyUsage: types.KeyUsageTypeKeyAgreement})
		if err != nil {
			t.Fatal(err)
		}
		if len(k.KeyMetadata.KeyAgreementAlgorithms) != 1 {
			t.Fatalf("KeyAgreementAlgorithms = %v", k.KeyMetadata.KeyAgreementAlgorithms)
		}
		mine, _ := tc.curve.GenerateKey(rand.Reader)
		myPub, _ := x509.MarshalPKIXPublicKey(mine.PublicKey())
		out, err := c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: k.KeyMetadata.KeyId, KeyAgreementAlgorithm: "ECDH", PublicKey: myPub})
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: k.KeyMetadata.KeyId})
		theirs, _ := x509.ParsePKIXPublicKey(pk.PublicKey)
		tp, _ := theirs.(*ecdsa.PublicKey).ECDH()
		want, _ := mine.ECDH(tp)
		if !bytes.Equal(out.SharedSecret, want) || out.KeyOrigin != types.OriginTypeAwsKms {
			t.Fatalf("%s: shared secrets differ", tc.spec)
		}
		_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: k.KeyMetadata.KeyId, KeyAgreementAlgorithm: "ECDH", PublicKey: []byte("junk")})
		wantCode(t, err, "ValidationException")
	}
}

func TestHMACKeys(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	for _, tc := range []struct {
		spec types.KeySpec
		alg  types.MacAlgorithmSpec
	}{{types.KeySpecHmac224, "HMAC_SHA_224"}, {types.KeySpecHmac256, "HMAC_SHA_256"}, {types.KeySpecHmac384, "HMAC_SHA_384"}, {types.KeySpecHmac512, "HMAC_SHA_512"}} {
		k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: tc.spec, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
		if err != nil {
			t.Fatal(err)
		}
		if len(k.KeyMetadata.MacAlgorithms) != 1 || k.KeyMetadata.MacAlgorithms[0] != tc.alg {
			t.Fatalf("MacAlgorithms = %v", k.KeyMetadata.MacAlgorithms)
		}
		m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: tc.alg})
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("m"), Mac: m.Mac, MacAlgorithm: tc.alg})
		if err != nil || !v.MacValid {
			t.Fatalf("VerifyMac: %v", err)
		}
		m.Mac[0] ^= 1
		_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("m"), Mac: m.Mac, MacAlgorithm: tc.alg})
		wantErr[*types.KMSInvalidMacException](t, err)
		_, err = c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_1" + "x"})
		wantCode(t, err, "ValidationException")
	}
	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	_, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: k.KeyMetadata.KeyId, Message: []byte("m"), MacAlgorithm: "HMAC_SHA_512"})
	wantErr[*types.InvalidKeyUsageException](t, err)
}

func TestDataKeyPairs(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "it is about cryptography, the same on both stores")
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	ec := map[string]string{"purpose": "pair"}
	for _, spec := range []types.DataKeyPairSpec{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"} {
		t.Run(string(spec), func(t *testing.T) {
			out, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: k.KeyMetadata.KeyId, KeyPairSpec: spec, EncryptionContext: ec})
			if err != nil {
				t.Fatal(err)
			}
			if out.KeyPairSpec != spec || len(out.PublicKey) == 0 {
				t.Fatalf("%+v", out)
			}
			if spec != "ECC_SECG_P256K1" {
				priv, err := x509.ParsePKCS8PrivateKey(out.PrivateKeyPlaintext)
				if err != nil {
					t.Fatalf("private key is not PKCS#8: %v", err)
				}
				pub, _ := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
				if !bytes.Equal(pub, out.PublicKey) {
					t.Fatal("public key does not match the private key")
				}
			}
			dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.PrivateKeyCiphertextBlob, EncryptionContext: ec})
			if err != nil || !bytes.Equal(dec.Plaintext, out.PrivateKeyPlaintext) {
				t.Fatalf("decrypting the private key: %v", err)
			}
			wo, err := c.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: k.KeyMetadata.KeyId, KeyPairSpec: spec})
			if err != nil || len(wo.PrivateKeyCiphertextBlob) == 0 || len(wo.PublicKey) == 0 {
				t.Fatalf("WithoutPlaintext: %v", err)
			}
		})
	}
	_, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: k.KeyMetadata.KeyId, KeyPairSpec: "SM2"})
	wantCode(t, err, "ValidationException")
}

func wrapForImport(t *testing.T, c *kms.Client, keyID *string, material []byte) (token, wrapped []byte) {
	t.Helper()
	p, err := c.GetParametersForImport(context.Background(), &kms.GetParametersForImportInput{KeyId: keyID,
		WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(*p.ParametersValidTo); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("ParametersValidTo %v is not 24 h out", p.ParametersValidTo)
	}
	pub, err := x509.ParsePKIXPublicKey(p.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.ImportToken, wrapped
}

func TestImportedKeyMaterial(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	if k.KeyMetadata.KeyState != types.KeyStatePendingImport || k.KeyMetadata.Enabled {
		t.Fatalf("new EXTERNAL key: %+v", k.KeyMetadata)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: id})
	wantErr[*types.KMSInvalidStateException](t, err)

	material := make([]byte, 32)
	rand.Read(material)
	token, wrapped := wrapForImport(t, c, id, material)
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: []byte("junk"), EncryptedKeyMaterial: wrapped})
	wantErr[*types.InvalidImportTokenException](t, err)
	imp, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: token, EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	if err != nil || imp.KeyMaterialId == nil {
		t.Fatalf("ImportKeyMaterial: %+v, %v", imp, err)
	}
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if d.KeyMetadata.KeyState != types.KeyStateEnabled || d.KeyMetadata.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire {
		t.Fatalf("after import: %+v", d.KeyMetadata)
	}
	enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("imported")})
	if err != nil {
		t.Fatal(err)
	}

	// Different material is refused; the same material again is accepted.
	other := make([]byte, 32)
	rand.Read(other)
	token, wrapped = wrapForImport(t, c, id, other)
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: token, EncryptedKeyMaterial: wrapped})
	wantErr[*types.IncorrectKeyMaterialException](t, err)

	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id}); err != nil {
		t.Fatal(err)
	}
	d, _ = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if d.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("after delete: %s", d.KeyMetadata.KeyState)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantErr[*types.KMSInvalidStateException](t, err)

	token, wrapped = wrapForImport(t, c, id, material)
	validTo := time.Now().Add(48 * time.Hour)
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: id, ImportToken: token, EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &validTo}); err != nil {
		t.Fatalf("re-import of the same material: %v", err)
	}
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "imported" {
		t.Fatalf("old ciphertext after re-import: %v", err)
	}
	d, _ = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if d.KeyMetadata.ValidTo == nil || d.KeyMetadata.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires {
		t.Fatalf("ValidTo after import with expiry: %+v", d.KeyMetadata)
	}

	// HMAC material imported: the MAC matches Go's crypto/hmac.
	hk, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	hmacKey := make([]byte, 32)
	rand.Read(hmacKey)
	token, wrapped = wrapForImport(t, c, hk.KeyMetadata.KeyId, hmacKey)
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: hk.KeyMetadata.KeyId, ImportToken: token, EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatal(err)
	}
	m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: hk.KeyMetadata.KeyId, Message: []byte("msg"), MacAlgorithm: "HMAC_SHA_256"})
	if err != nil {
		t.Fatal(err)
	}
	want := hmac.New(sha256.New, hmacKey)
	want.Write([]byte("msg"))
	if !hmac.Equal(m.Mac, want.Sum(nil)) {
		t.Fatal("GenerateMac with imported material differs from crypto/hmac")
	}

	// Asymmetric material imported (a P-256 key fits RSA-OAEP wrapping).
	ak, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	token, wrapped = wrapForImport(t, c, ak.KeyMetadata.KeyId, der)
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ak.KeyMetadata.KeyId, ImportToken: token, EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Sign(ctx, &kms.SignInput{KeyId: ak.KeyMetadata.KeyId, Message: []byte("msg"), SigningAlgorithm: "ECDSA_SHA_256"})
	if err != nil {
		t.Fatal(err)
	}
	dg := sha256.Sum256([]byte("msg"))
	if !ecdsa.VerifyASN1(&priv.PublicKey, dg[:], s.Signature) {
		t.Fatal("signature with imported P-256 material does not verify with the original public key")
	}
	// A P-384 key is not material for a P-256 KMS key.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(p384)
	ak2, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	token, wrapped = wrapForImport(t, c, ak2.KeyMetadata.KeyId, der)
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ak2.KeyMetadata.KeyId, ImportToken: token, EncryptedKeyMaterial: wrapped})
	wantCode(t, err, "ValidationException")
	_, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: k.KeyMetadata.KeyId,
		WrappingAlgorithm: types.AlgorithmSpecRsaesPkcs1V15, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantCode(t, err, "ValidationException")
	sym, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	_, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: sym.KeyMetadata.KeyId,
		WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	wantErr[*types.UnsupportedOperationException](t, err)
}

func TestMultiRegionAndCustomStoreRefusals(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, _ := c.CreateKey(ctx, &kms.CreateKeyInput{})
	_, err := c.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: k.KeyMetadata.KeyId, ReplicaRegion: aws.String("us-west-2")})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: k.KeyMetadata.KeyId, PrimaryRegion: aws.String("us-west-2")})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String("cks-1234567890abcdef0"),
		KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	wantErr[*types.UnsupportedOperationException](t, err)
}

func TestAWSManagedKeys(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/aws/s3")})
	if err != nil {
		t.Fatal(err)
	}
	md := d.KeyMetadata
	if md.KeyManager != types.KeyManagerTypeAws || md.KeySpec != types.KeySpecSymmetricDefault || md.KeyState != types.KeyStateEnabled {
		t.Fatalf("alias/aws/s3: %+v", md)
	}
	again, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("arn:aws:kms:us-east-1:" + e.Account + ":alias/aws/s3")})
	if *again.KeyMetadata.KeyId != *md.KeyId {
		t.Fatal("a second use made another key")
	}
	st, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: md.KeyId})
	if err != nil || !st.KeyRotationEnabled {
		t.Fatalf("AWS managed key rotation = %+v, %v (AWS: always true)", st, err)
	}
	// Only the service may use it; nobody may manage it.
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/aws/s3"), Plaintext: []byte("x")})
	wantCode(t, err, "AccessDeniedException")
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: md.KeyId})
	wantCode(t, err, "AccessDeniedException")
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/mine"), TargetKeyId: md.KeyId})
	wantErr[*types.InvalidAliasNameException](t, err)
	as, _ := c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: md.KeyId})
	if len(as.Aliases) != 1 || *as.Aliases[0].AliasName != "alias/aws/s3" {
		t.Fatalf("ListAliases = %+v", as.Aliases)
	}
	_, err = c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/aws/no-such-service")})
	wantErr[*types.NotFoundException](t, err)
}
