package keyspec

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"slices"
)

func oaepHash(alg string) (crypto.Hash, bool) {
	switch alg {
	case "RSAES_OAEP_SHA_1":
		return crypto.SHA1, true
	case "RSAES_OAEP_SHA_256":
		return crypto.SHA256, true
	}
	return 0, false
}

func checkEncryption(spec, alg string) (crypto.Hash, error) {
	info, ok := Lookup(spec)
	h, known := oaepHash(alg)
	if !ok || !known || !slices.Contains(info.Encryption, alg) {
		return 0, errorf(InvalidKeyUsage, "The encryption algorithm %s is not valid for a %s KMS key.", alg, spec)
	}
	return h, nil
}

// Encrypt encrypts with the public half of an RSA key, returning the raw
// OAEP ciphertext (what AWS returns for RSA keys: no keyhold envelope).
func Encrypt(spec string, pubDER []byte, alg string, plaintext []byte) ([]byte, error) {
	h, err := checkEncryption(spec, alg)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublic(spec, pubDER)
	if err != nil {
		return nil, err
	}
	rp := pub.(*rsa.PublicKey)
	if max := rp.Size() - 2*h.Size() - 2; len(plaintext) > max {
		return nil, errorf(Validation, "Plaintext of %d bytes is too long for %s with %s; the limit is %d bytes.", len(plaintext), alg, spec, max)
	}
	ct, err := rsa.EncryptOAEP(h.New(), rand.Reader, rp, plaintext, nil)
	if err != nil {
		return nil, errorf(Internal, "keyspec: encrypt: %v", err)
	}
	return ct, nil
}

// Decrypt decrypts a raw OAEP ciphertext with an RSA private key.
func Decrypt(spec string, privDER []byte, alg string, ciphertext []byte) ([]byte, error) {
	if _, err := checkEncryption(spec, alg); err != nil {
		return nil, err
	}
	p, err := Load(spec, privDER)
	if err != nil {
		return nil, err
	}
	return p.Decrypt(alg, ciphertext)
}

// DeriveSharedSecret runs ECDH between a KEY_AGREEMENT private key and a
// peer's DER SubjectPublicKeyInfo on the same curve. The result is the raw
// shared secret (the x-coordinate of the shared point), as AWS returns it;
// callers run their own KDF.
func DeriveSharedSecret(spec string, privDER []byte, alg string, peerDER []byte) ([]byte, error) {
	info, ok := Lookup(spec)
	if !ok || !slices.Contains(info.Agreement, alg) {
		return nil, errorf(InvalidKeyUsage, "Key agreement algorithm %s is incompatible with key spec %s.", alg, spec)
	}
	p, err := Load(spec, privDER)
	if err != nil {
		return nil, err
	}
	return p.DeriveSharedSecret(alg, peerDER)
}

func macHash(alg string) crypto.Hash {
	switch alg {
	case "HMAC_SHA_224":
		return crypto.SHA224
	case "HMAC_SHA_256":
		return crypto.SHA256
	case "HMAC_SHA_384":
		return crypto.SHA384
	case "HMAC_SHA_512":
		return crypto.SHA512
	}
	return 0
}

// MAC computes the HMAC of msg with an HMAC key of spec.
func MAC(spec string, key []byte, alg string, msg []byte) ([]byte, error) {
	info, ok := Lookup(spec)
	if !ok || !slices.Contains(info.MAC, alg) {
		return nil, errorf(InvalidKeyUsage, "MAC algorithm %s is incompatible with key spec %s.", alg, spec)
	}
	if len(msg) == 0 || len(msg) > MaxMessage {
		return nil, errorf(Validation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and %d", MaxMessage)
	}
	m := hmac.New(macHash(alg).New, key)
	m.Write(msg)
	return m.Sum(nil), nil
}

// VerifyMAC recomputes the HMAC and compares in constant time; a mismatch is
// an Error of Kind InvalidMac.
func VerifyMAC(spec string, key []byte, alg string, msg, mac []byte) error {
	want, err := MAC(spec, key, alg, msg)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, mac) {
		return errorf(InvalidMac, "The MAC is not valid for the message and key.")
	}
	return nil
}
