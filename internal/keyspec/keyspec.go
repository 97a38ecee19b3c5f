// Package keyspec is the cryptography of every KMS key spec besides
// SYMMETRIC_DEFAULT: what each spec may do (usages and algorithms as AWS
// lists them), generating and serializing material (PKCS#8 DER private keys,
// DER SubjectPublicKeyInfo public keys, raw HMAC keys), Sign/Verify with the
// message types AWS defines, RSA-OAEP, ECDH, HMAC, data key pairs and the
// unwrapping of imported key material.
//
// It is pure: no storage, no policies, no HTTP. Every primitive comes from
// the standard library, cloudflare/circl (ML-DSA) or decred's secp256k1;
// nothing here implements cryptography by hand. Errors are values of Error
// with a Kind the caller maps to an AWS exception.
package keyspec

import (
	"fmt"
	"slices"
)

// Key specs as AWS spells them.
const (
	RSA2048      = "RSA_2048"
	RSA3072      = "RSA_3072"
	RSA4096      = "RSA_4096"
	P256         = "ECC_NIST_P256"
	P384         = "ECC_NIST_P384"
	P521         = "ECC_NIST_P521"
	Secp256k1    = "ECC_SECG_P256K1"
	Ed25519      = "ECC_NIST_EDWARDS25519"
	MLDSA44      = "ML_DSA_44"
	MLDSA65      = "ML_DSA_65"
	MLDSA87      = "ML_DSA_87"
	HMAC224      = "HMAC_224"
	HMAC256      = "HMAC_256"
	HMAC384      = "HMAC_384"
	HMAC512      = "HMAC_512"
	SM2          = "SM2"
	SymmetricKey = "SYMMETRIC_DEFAULT"
)

// Key usages.
const (
	UsageEncryptDecrypt = "ENCRYPT_DECRYPT"
	UsageSignVerify     = "SIGN_VERIFY"
	UsageGenerateVerify = "GENERATE_VERIFY_MAC"
	UsageKeyAgreement   = "KEY_AGREEMENT"
)

// Message types of Sign and Verify.
const (
	MessageRaw        = "RAW"
	MessageDigest     = "DIGEST"
	MessageExternalMu = "EXTERNAL_MU"
)

// MaxMessage is the largest Message Sign, Verify and GenerateMac accept.
const MaxMessage = 4096

// Kind says which AWS exception an Error becomes.
type Kind int

const (
	// Validation: the request is malformed for this key (ValidationException).
	Validation Kind = iota + 1
	// InvalidKeyUsage: the algorithm or operation does not fit the key spec
	// or usage (InvalidKeyUsageException).
	InvalidKeyUsage
	// InvalidSignature: Verify found the signature wrong (KMSInvalidSignatureException).
	InvalidSignature
	// InvalidMac: VerifyMac found the MAC wrong (KMSInvalidMacException).
	InvalidMac
	// InvalidCiphertext: RSA decryption failed (InvalidCiphertextException).
	InvalidCiphertext
	// Unsupported: AWS offers this, keyhold does not (UnsupportedOperationException).
	Unsupported
	// Internal: a failure of the machinery, never the caller's input.
	Internal
)

// Error is a failure the caller maps by Kind; Message is safe for clients.
type Error struct {
	Kind    Kind
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(k Kind, format string, a ...any) error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, a...)}
}

// Info is what a key spec may do, as DescribeKey and GetPublicKey list it.
type Info struct {
	Spec string
	// Usages the spec may be created with; the first is the default only
	// for SYMMETRIC_DEFAULT (every other spec requires KeyUsage).
	Usages     []string
	Signing    []string
	Encryption []string // for ENCRYPT_DECRYPT usage only
	Agreement  []string // for KEY_AGREEMENT usage only
	MAC        []string
	// DataKeyPair is true when GenerateDataKeyPair accepts the spec as KeyPairSpec.
	DataKeyPair bool
	// HMACKeyBytes is the generated HMAC key length, and the accepted import
	// range [ImportMin, ImportMax] for HMAC and symmetric keys.
	HMACKeyBytes         int
	ImportMin, ImportMax int
}

var infos = map[string]Info{
	SymmetricKey: {Spec: SymmetricKey, Usages: []string{UsageEncryptDecrypt}, Encryption: []string{"SYMMETRIC_DEFAULT"}, ImportMin: 32, ImportMax: 32},
	RSA2048:      rsaInfo(RSA2048),
	RSA3072:      rsaInfo(RSA3072),
	RSA4096:      rsaInfo(RSA4096),
	P256:         eccInfo(P256, "ECDSA_SHA_256"),
	P384:         eccInfo(P384, "ECDSA_SHA_384"),
	P521:         eccInfo(P521, "ECDSA_SHA_512"),
	Secp256k1:    eccInfo(Secp256k1, "ECDSA_SHA_256"),
	Ed25519:      {Spec: Ed25519, Usages: []string{UsageSignVerify}, Signing: []string{"ED25519_SHA_512", "ED25519_PH_SHA_512"}, DataKeyPair: true},
	MLDSA44:      {Spec: MLDSA44, Usages: []string{UsageSignVerify}, Signing: []string{"ML_DSA_SHAKE_256"}},
	MLDSA65:      {Spec: MLDSA65, Usages: []string{UsageSignVerify}, Signing: []string{"ML_DSA_SHAKE_256"}},
	MLDSA87:      {Spec: MLDSA87, Usages: []string{UsageSignVerify}, Signing: []string{"ML_DSA_SHAKE_256"}},
	HMAC224:      {Spec: HMAC224, Usages: []string{UsageGenerateVerify}, MAC: []string{"HMAC_SHA_224"}, HMACKeyBytes: 28, ImportMin: 28, ImportMax: 64},
	HMAC256:      {Spec: HMAC256, Usages: []string{UsageGenerateVerify}, MAC: []string{"HMAC_SHA_256"}, HMACKeyBytes: 32, ImportMin: 32, ImportMax: 64},
	HMAC384:      {Spec: HMAC384, Usages: []string{UsageGenerateVerify}, MAC: []string{"HMAC_SHA_384"}, HMACKeyBytes: 48, ImportMin: 48, ImportMax: 128},
	HMAC512:      {Spec: HMAC512, Usages: []string{UsageGenerateVerify}, MAC: []string{"HMAC_SHA_512"}, HMACKeyBytes: 64, ImportMin: 64, ImportMax: 128},
}

func rsaInfo(spec string) Info {
	return Info{Spec: spec, Usages: []string{UsageEncryptDecrypt, UsageSignVerify},
		Signing: []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
			"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"},
		Encryption: []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}, DataKeyPair: true}
}

func eccInfo(spec, alg string) Info {
	return Info{Spec: spec, Usages: []string{UsageSignVerify, UsageKeyAgreement}, Signing: []string{alg},
		Agreement: []string{"ECDH"}, DataKeyPair: true}
}

// Lookup returns what spec may do. SM2 is not known: keyhold serves the
// commercial partition, where AWS does not offer SM2 keys.
func Lookup(spec string) (Info, bool) {
	i, ok := infos[spec]
	return i, ok
}

// Specs lists every key spec keyhold creates.
func Specs() []string {
	out := make([]string, 0, len(infos))
	for s := range infos {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Algorithms returns the algorithm lists DescribeKey and GetPublicKey report
// for a key of this spec and usage: only those the usage allows.
func (i Info) Algorithms(usage string) (signing, encryption, agreement, mac []string) {
	switch usage {
	case UsageSignVerify:
		return i.Signing, nil, nil, nil
	case UsageEncryptDecrypt:
		return nil, i.Encryption, nil, nil
	case UsageKeyAgreement:
		return nil, nil, i.Agreement, nil
	case UsageGenerateVerify:
		return nil, nil, nil, i.MAC
	}
	return nil, nil, nil, nil
}

// AllowsUsage says whether spec may be created with usage.
func (i Info) AllowsUsage(usage string) bool { return slices.Contains(i.Usages, usage) }

// IsAsymmetric says whether the spec has a public key.
func (i Info) IsAsymmetric() bool { return i.Spec != SymmetricKey && i.HMACKeyBytes == 0 }

// IsHMAC says whether the spec is an HMAC key.
func (i Info) IsHMAC() bool { return i.HMACKeyBytes != 0 }
