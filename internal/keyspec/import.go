package keyspec

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"fmt"

	kwp "github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// Wrapping algorithms of GetParametersForImport.
const (
	WrapOAEPSHA1      = "RSAES_OAEP_SHA_1"
	WrapOAEPSHA256    = "RSAES_OAEP_SHA_256"
	WrapPKCS1         = "RSAES_PKCS1_V1_5"
	WrapAESKeyWrap1   = "RSA_AES_KEY_WRAP_SHA_1"
	WrapAESKeyWrap256 = "RSA_AES_KEY_WRAP_SHA_256"
	WrapSM2PKE        = "SM2PKE"
)

// CheckWrapping validates a GetParametersForImport pair before any key is
// generated. RSAES_PKCS1_V1_5 is refused as AWS has refused it since 2023;
// SM2 exists only in AWS's China regions.
func CheckWrapping(alg, wrappingSpec string) error {
	switch wrappingSpec {
	case RSA2048, RSA3072, RSA4096:
	case SM2:
		return errorf(Validation, "The wrapping key spec SM2 is supported only in China Regions.")
	default:
		return errorf(Validation, "1 validation error detected: Value '%s' at 'wrappingKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]", wrappingSpec)
	}
	switch alg {
	case WrapOAEPSHA1, WrapOAEPSHA256, WrapAESKeyWrap1, WrapAESKeyWrap256:
		return nil
	case WrapPKCS1:
		return errorf(Validation, "The wrapping algorithm RSAES_PKCS1_V1_5 is no longer supported. Use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.")
	case WrapSM2PKE:
		return errorf(Validation, "The wrapping algorithm SM2PKE is supported only in China Regions.")
	}
	return errorf(Validation, "1 validation error detected: Value '%s' at 'wrappingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE]", alg)
}

// NewWrappingKey generates the RSA key pair of one import token: the PKCS#8
// private key (kept sealed by the caller) and the public key to return.
func NewWrappingKey(wrappingSpec string) (privDER, pubDER []byte, err error) {
	if rsaBits(wrappingSpec) == 0 {
		return nil, nil, errorf(Validation, "Unsupported wrapping key spec %s.", wrappingSpec)
	}
	k, err := rsa.GenerateKey(rand.Reader, rsaBits(wrappingSpec))
	if err != nil {
		return nil, nil, fmt.Errorf("keyspec.NewWrappingKey: %w", err)
	}
	if privDER, err = marshalPrivate(k); err != nil {
		return nil, nil, err
	}
	pubDER, err = marshalPublic(&k.PublicKey)
	return privDER, pubDER, err
}

// wrapHash is the OAEP hash (and MGF1 hash) of a wrapping algorithm.
func wrapHash(alg string) crypto.Hash {
	switch alg {
	case WrapOAEPSHA1, WrapAESKeyWrap1:
		return crypto.SHA1
	}
	return crypto.SHA256
}

// aesWrapKeyLen is the size of the ephemeral AES key of the RSA_AES wrapping
// algorithms: AWS asks for a 256-bit key (openssl's id-aes256-wrap-pad).
const aesWrapKeyLen = 32

// Unwrap recovers imported key material wrapped with the wrapping key's
// public half. RSAES_OAEP_*: the material itself is OAEP-encrypted.
// RSA_AES_KEY_WRAP_*: an ephemeral AES-256 key, OAEP-encrypted (as long as
// the wrapping key's modulus), is followed by the material wrapped under it
// with AES key wrap with padding (RFC 5649, tink's KWP). A failure is
// InvalidCiphertext (AWS's answer for wrapped material that does not
// decrypt).
func Unwrap(wrappingSpec string, wrappingPrivDER []byte, alg string, wrapped []byte) ([]byte, error) {
	if err := CheckWrapping(alg, wrappingSpec); err != nil {
		return nil, err
	}
	k, err := ParsePrivate(wrappingSpec, wrappingPrivDER)
	if err != nil {
		return nil, errorf(Internal, "keyspec: wrapping key: %v", err)
	}
	priv := k.(*rsa.PrivateKey)
	bad := errorf(InvalidCiphertext, "The wrapped key material could not be decrypted with the import token's wrapping key and %s.", alg)
	h := wrapHash(alg)
	if alg == WrapOAEPSHA1 || alg == WrapOAEPSHA256 {
		pt, err := rsa.DecryptOAEP(h.New(), nil, priv, wrapped, nil)
		if err != nil {
			return nil, bad
		}
		return pt, nil
	}
	n := priv.Size()
	if len(wrapped) <= n {
		return nil, bad
	}
	aesKey, err := rsa.DecryptOAEP(h.New(), nil, priv, wrapped[:n], nil)
	if err != nil || len(aesKey) != aesWrapKeyLen {
		clear(aesKey)
		return nil, bad
	}
	defer clear(aesKey)
	w, err := kwp.NewKWP(aesKey)
	if err != nil {
		return nil, bad
	}
	pt, err := w.Unwrap(wrapped[n:])
	if err != nil {
		return nil, bad
	}
	return pt, nil
}

// CheckImported validates unwrapped material for a key of spec: length for
// symmetric and HMAC keys, a parseable private key of exactly that spec for
// asymmetric ones. It returns the material to store (asymmetric material is
// re-encoded so the same key always has the same bytes).
func CheckImported(spec string, material []byte) ([]byte, error) {
	info, ok := Lookup(spec)
	if !ok {
		return nil, errorf(Validation, "Key spec %s does not accept imported key material.", spec)
	}
	if !info.IsAsymmetric() {
		if len(material) < info.ImportMin || len(material) > info.ImportMax {
			return nil, errorf(Validation, "Imported key material for a %s key must be %d to %d bytes long.", spec, info.ImportMin, info.ImportMax)
		}
		return material, nil
	}
	k, err := ParsePrivate(spec, material)
	if err != nil {
		return nil, err
	}
	return marshalPrivate(k)
}

// SameMaterial compares material in constant time (re-import must bring
// the same key material).
func SameMaterial(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
