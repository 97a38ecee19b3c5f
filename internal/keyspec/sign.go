package keyspec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"slices"
	"strings"

	"github.com/cloudflare/circl/sign"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	_ "crypto/sha1"   // registers SHA-1 for OAEP
	_ "crypto/sha256" // registers SHA-224/256
	_ "crypto/sha512" // registers SHA-384/512
)

func signingHash(alg string) crypto.Hash {
	switch {
	case strings.HasSuffix(alg, "SHA_256"):
		return crypto.SHA256
	case strings.HasSuffix(alg, "SHA_384"):
		return crypto.SHA384
	case strings.HasSuffix(alg, "SHA_512"):
		return crypto.SHA512
	}
	return 0
}

// prepare checks algorithm and message type against the key spec and
// returns what the primitive signs: the digest for hash-then-sign
// algorithms, the message itself for pure Ed25519 and ML-DSA.
func prepare(spec, alg, msgType string, msg []byte) ([]byte, error) {
	info, ok := Lookup(spec)
	if !ok || !slices.Contains(info.Signing, alg) {
		return nil, errorf(InvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", alg, spec)
	}
	if msgType == "" {
		msgType = MessageRaw
	}
	if len(msg) == 0 || len(msg) > MaxMessage {
		return nil, errorf(Validation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and %d", MaxMessage)
	}
	switch alg {
	case "ED25519_SHA_512":
		if msgType != MessageRaw {
			return nil, errorf(Validation, "The ED25519_SHA_512 signing algorithm requires MessageType RAW.")
		}
		return msg, nil
	case "ED25519_PH_SHA_512":
		if msgType != MessageDigest {
			return nil, errorf(Validation, "The ED25519_PH_SHA_512 signing algorithm requires MessageType DIGEST.")
		}
		if len(msg) != 64 {
			return nil, errorf(Validation, "Digest is invalid length for algorithm %s.", alg)
		}
		return msg, nil
	case "ML_DSA_SHAKE_256":
		switch msgType {
		case MessageRaw:
			return msg, nil
		case MessageExternalMu:
			if len(msg) != 64 {
				return nil, errorf(Validation, "An EXTERNAL_MU message must be 64 bytes long.")
			}
			return msg, nil
		}
		return nil, errorf(Validation, "The ML_DSA_SHAKE_256 signing algorithm supports MessageType RAW and EXTERNAL_MU.")
	}
	h := signingHash(alg)
	switch msgType {
	case MessageRaw:
		d := h.New()
		d.Write(msg)
		return d.Sum(nil), nil
	case MessageDigest:
		if len(msg) != h.Size() {
			return nil, errorf(Validation, "Digest is invalid length for algorithm %s.", alg)
		}
		return msg, nil
	case MessageExternalMu:
		return nil, errorf(Validation, "MessageType EXTERNAL_MU is valid only with the ML_DSA_SHAKE_256 signing algorithm.")
	}
	return nil, errorf(Validation, "1 validation error detected: Value '%s' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]", msgType)
}

// Sign signs msg (or its digest, per msgType) with a PKCS#8 private key of
// spec. Signatures are in the encodings AWS returns: DER ECDSA-Sig-Value for
// ECDSA, raw bytes for RSA, Ed25519 and ML-DSA.
func Sign(spec string, privDER []byte, alg, msgType string, msg []byte) ([]byte, error) {
	tbs, err := prepare(spec, alg, msgType, msg)
	if err != nil {
		return nil, err
	}
	p, err := Load(spec, privDER)
	if err != nil {
		return nil, err
	}
	return p.signPrepared(alg, msgType, tbs)
}

func signWith(k crypto.Signer, alg string, tbs []byte) ([]byte, error) {
	var (
		sig []byte
		err error
	)
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if strings.HasPrefix(alg, "RSASSA_PSS") {
			sig, err = rsa.SignPSS(rand.Reader, k, signingHash(alg), tbs, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, signingHash(alg), tbs)
		}
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, tbs)
	case k256:
		sig, err = k.Sign(nil, tbs, nil)
	case ed25519.PrivateKey:
		if alg == "ED25519_PH_SHA_512" {
			sig, err = k.Sign(nil, tbs, &ed25519.Options{Hash: crypto.SHA512})
		} else {
			sig = ed25519.Sign(k, tbs)
		}
	case sign.PrivateKey:
		// Hedged (randomized) signing with an empty context, as FIPS 204
		// recommends and AWS does.
		sig, err = k.(crypto.Signer).Sign(rand.Reader, tbs, crypto.Hash(0))
	default:
		return nil, errorf(Internal, "keyspec: no signer for %T", k)
	}
	if err != nil {
		return nil, errorf(Internal, "keyspec: sign: %v", err)
	}
	return sig, nil
}

// errVerifyMu answers Verify with MessageType EXTERNAL_MU. Signing from a
// caller's mu is ML-DSA's external-mu entry point, which filippo.io/mldsa
// (the standard library's ML-DSA, packaged for Go 1.26) exports; verifying
// from mu is not exported by it, by circl or by the standard library, and
// keyhold writes no ML-DSA internals by hand. A signature made from mu is an
// ordinary ML-DSA signature of the message, so it verifies with
// MessageType RAW and the message, or offline with the public key.
func errVerifyMu() error {
	return errorf(Unsupported, "Verify with MessageType EXTERNAL_MU is not supported by keyhold: verify the signature with MessageType RAW and the message, or offline with the public key from GetPublicKey.")
}

// Verify checks a signature with the public key (DER SubjectPublicKeyInfo)
// of spec. A wrong signature is an Error of Kind InvalidSignature.
func Verify(spec string, pubDER []byte, alg, msgType string, msg, sig []byte) error {
	tbs, err := prepare(spec, alg, msgType, msg)
	if err != nil {
		return err
	}
	if msgType == MessageExternalMu {
		return errVerifyMu()
	}
	pub, err := ParsePublic(spec, pubDER)
	if err != nil {
		return err
	}
	if !verifyWith(pub, alg, tbs, sig) {
		return errorf(InvalidSignature, "The signature is not valid.")
	}
	return nil
}

func verifyWith(pub crypto.PublicKey, alg string, tbs, sig []byte) bool {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RSASSA_PSS") {
			return rsa.VerifyPSS(p, signingHash(alg), tbs, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
		}
		return rsa.VerifyPKCS1v15(p, signingHash(alg), tbs, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(p, tbs, sig)
	case *secp256k1.PublicKey:
		// Parse the DER leniently (any valid r, s), as verifiers outside
		// keyhold do; decred checks the arithmetic.
		var rs struct{ R, S asn1.RawValue }
		if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
			return false
		}
		if rs.R.Tag != asn1.TagInteger || rs.S.Tag != asn1.TagInteger || len(rs.R.Bytes) == 0 || len(rs.S.Bytes) == 0 ||
			rs.R.Bytes[0]&0x80 != 0 || rs.S.Bytes[0]&0x80 != 0 {
			return false
		}
		var r, s secp256k1.ModNScalar
		rb, sb := trimInt(rs.R.Bytes), trimInt(rs.S.Bytes)
		if len(rb) > 32 || len(sb) > 32 || r.SetByteSlice(rb) || s.SetByteSlice(sb) || r.IsZero() || s.IsZero() {
			return false
		}
		return secpecdsa.NewSignature(&r, &s).Verify(tbs, p)
	case ed25519.PublicKey:
		if alg == "ED25519_PH_SHA_512" {
			return ed25519.VerifyWithOptions(p, tbs, sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
		}
		return ed25519.Verify(p, tbs, sig)
	case sign.PublicKey:
		return p.Scheme().Verify(p, tbs, sig, nil)
	}
	return false
}

// trimInt drops the sign byte of a positive DER INTEGER.
func trimInt(b []byte) []byte {
	for len(b) > 1 && b[0] == 0 {
		b = b[1:]
	}
	return b
}
