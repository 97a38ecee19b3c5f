package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	kwp "github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/keyhold/keyhold/internal/keyspec"
)

// matrixFile is the key spec x operation matrix, written by
// TestKeySpecOperationMatrix from what the server answers (go test
// ./internal/integration -run TestKeySpecOperationMatrix -update).
const matrixFile = "../../docs/keyspec-matrix.md"

// cell runs one operation and renders its outcome: "✓" or the exception
// AWS's SDK parsed, without its "Exception" suffix.
func cell(err error) string {
	if err == nil {
		return "✓"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return strings.TrimSuffix(strings.TrimPrefix(ae.ErrorCode(), "KMS"), "Exception")
	}
	return "error: " + err.Error()
}

// wrapRSAAES wraps material for RSA_AES_KEY_WRAP_SHA_256 (the openssl
// cross-check is TestImportWrappedByOpenSSL; here tink's KWP does it).
func wrapRSAAES(t *testing.T, pubDER, material []byte) []byte {
	t.Helper()
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatal(err)
	}
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	a, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := kwp.NewKWP(aesKey)
	b, err := w.Wrap(material)
	if err != nil {
		t.Fatal(err)
	}
	return append(a, b...)
}

// TestKeySpecOperationMatrix asks the server, for every key spec and key
// usage, which operations work, and checks the answer against the matrix
// in docs/keyspec-matrix.md (the closing note's table is this file, made
// by the server, not by hand). Each ✓ is a real round trip: Decrypt of
// what Encrypt made, Verify of what Sign made, VerifyMac of the MAC.
func TestKeySpecOperationMatrix(t *testing.T) {
	if onPostgres {
		t.Skip("the matrix is about cryptography, the same on both stores; it runs in the SQLite pass")
	}
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	sym, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeKeyAgreement})
	if err != nil {
		t.Fatal(err)
	}
	peerPub, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: peer.KeyMetadata.KeyId})

	usages := []types.KeyUsageType{types.KeyUsageTypeEncryptDecrypt, types.KeyUsageTypeSignVerify, types.KeyUsageTypeGenerateVerifyMac, types.KeyUsageTypeKeyAgreement}
	cols := []string{"Encrypt/Decrypt", "GenerateDataKey", "Sign/Verify", "Sign EXTERNAL_MU", "GetPublicKey", "DeriveSharedSecret", "GenerateMac/VerifyMac",
		"EnableKeyRotation", "RotateKeyOnDemand", "Import (RSA_AES_KEY_WRAP_SHA_256)"}
	var b strings.Builder
	b.WriteString("# Key spec × operation matrix\n\n")
	b.WriteString("Written by `go test ./internal/integration -run TestKeySpecOperationMatrix -update` from what keyhold answers through\n")
	b.WriteString("aws-sdk-go-v2 (the test fails when keyhold's answers and this file differ). ✓: the operation works (a round trip:\n")
	b.WriteString("Decrypt of the ciphertext, Verify of the signature, VerifyMac of the MAC, a key imported with that material);\n")
	b.WriteString("otherwise the AWS exception keyhold answers, without its `Exception` suffix. \"GenerateDataKeyPair\" is the key spec\n")
	b.WriteString("as a `KeyPairSpec` (with a symmetric key). Rows are the key usages CreateKey accepts for the spec.\n\n")
	b.WriteString("| KeySpec | KeyUsage | " + strings.Join(cols, " | ") + " | GenerateDataKeyPair |\n")
	b.WriteString("|---|---|" + strings.Repeat("---|", len(cols)+1) + "\n")
	var refused []string
	materials := map[types.KeySpec][]byte{} // one generated material per spec, for both usages
	for _, spec := range types.KeySpec("").Values() {
		var refusedUsages []string
		refusedCode := ""
		pairCell := "—"
		if _, err := c.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: sym.KeyMetadata.KeyId, KeyPairSpec: types.DataKeyPairSpec(spec)}); true {
			pairCell = cell(err)
		}
		for _, usage := range usages {
			k, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
			if err != nil {
				refusedUsages, refusedCode = append(refusedUsages, string(usage)), cell(err)
				continue
			}
			md := k.KeyMetadata
			id := md.KeyId
			row := []string{string(spec), string(usage)}

			encAlg := types.EncryptionAlgorithmSpecSymmetricDefault
			if len(md.EncryptionAlgorithms) > 0 {
				encAlg = md.EncryptionAlgorithms[len(md.EncryptionAlgorithms)-1]
			} else if strings.HasPrefix(string(spec), "RSA") {
				encAlg = types.EncryptionAlgorithmSpecRsaesOaepSha256
			}
			enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("matrix"), EncryptionAlgorithm: encAlg})
			if err == nil {
				var d *kms.DecryptOutput
				d, err = c.Decrypt(ctx, &kms.DecryptInput{KeyId: id, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: encAlg})
				if err == nil && string(d.Plaintext) != "matrix" {
					err = errors.New("Decrypt returned other plaintext")
				}
			}
			row = append(row, cell(err))
			_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256})
			row = append(row, cell(err))

			signAlg := types.SigningAlgorithmSpecEcdsaSha256
			if len(md.SigningAlgorithms) > 0 {
				signAlg = md.SigningAlgorithms[0]
			}
			s, err := c.Sign(ctx, &kms.SignInput{KeyId: id, Message: []byte("matrix"), SigningAlgorithm: signAlg})
			if err == nil {
				_, err = c.Verify(ctx, &kms.VerifyInput{KeyId: id, Message: []byte("matrix"), Signature: s.Signature, SigningAlgorithm: signAlg})
			}
			row = append(row, cell(err))
			_, err = c.Sign(ctx, &kms.SignInput{KeyId: id, Message: make([]byte, 64), MessageType: types.MessageTypeExternalMu, SigningAlgorithm: signAlg})
			row = append(row, cell(err))
			_, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: id})
			row = append(row, cell(err))
			_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: id, KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: peerPub.PublicKey})
			if spec != types.KeySpecEccNistP256 && err != nil && cell(err) == "Validation" {
				// Keys of other curves cannot take a P-256 peer; the
				// operation itself is available (a matching peer works).
				var other *kms.CreateKeyOutput
				if other, err = c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: types.KeyUsageTypeKeyAgreement}); err == nil {
					pp, _ := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: other.KeyMetadata.KeyId})
					_, err = c.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: id, KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: pp.PublicKey})
				}
			}
			row = append(row, cell(err))
			macAlg := types.MacAlgorithmSpecHmacSha256
			if len(md.MacAlgorithms) > 0 {
				macAlg = md.MacAlgorithms[0]
			}
			m, err := c.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: id, Message: []byte("matrix"), MacAlgorithm: macAlg})
			if err == nil {
				_, err = c.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: id, Message: []byte("matrix"), Mac: m.Mac, MacAlgorithm: macAlg})
			}
			row = append(row, cell(err))
			_, err = c.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: id})
			row = append(row, cell(err))
			_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id})
			row = append(row, cell(err))

			ext, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage, Origin: types.OriginTypeExternal})
			if err == nil {
				material, ok := materials[spec]
				if !ok {
					material, err = keyspec.Generate(string(spec))
					materials[spec] = material
				}
				if err == nil {
					var p *kms.GetParametersForImportOutput
					p, err = c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: ext.KeyMetadata.KeyId,
						WrappingAlgorithm: types.AlgorithmSpecRsaAesKeyWrapSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
					if err == nil {
						_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ext.KeyMetadata.KeyId, ImportToken: p.ImportToken,
							EncryptedKeyMaterial: wrapRSAAES(t, p.PublicKey, material), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
					}
				}
			}
			row = append(row, cell(err), pairCell)
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		if len(refusedUsages) > 0 {
			refused = append(refused, fmt.Sprintf("- %s: %s (%s)", spec, strings.Join(refusedUsages, ", "), refusedCode))
		}
	}
	b.WriteString("\nKey usages CreateKey refuses, per key spec (the SDK also knows key specs newer than the model keyhold follows):\n\n" + strings.Join(refused, "\n") + "\n")
	got := b.String()
	path := filepath.FromSlash(matrixFile)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(want) != got {
		t.Fatalf("keyhold's answers differ from %s (run with -update if the change is meant):\n%s", matrixFile, got)
	}
}
