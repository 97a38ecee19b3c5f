package keystore

import "context"

// Optional capabilities beyond the symmetric core. The kms package finds
// them by type assertion; a backend without one makes every key of that
// kind refuse the operation as AWS refuses it for custom key stores. Only
// the soft backend implements them: AWS custom key stores hold only
// SYMMETRIC_DEFAULT keys. Errors that come from the caller's input are
// *keyspec.Error values (the kms package maps their Kind).

// MaterialMaker creates, seals and imports material of any key spec.
type MaterialMaker interface {
	// NewKeyMaterial generates material of spec for a key and returns it
	// sealed, with its new key material id.
	NewKeyMaterial(keyID, spec string) (sealed, materialID []byte, err error)
	// SealKeyMaterial seals material the caller brought (import) under a
	// key material id.
	SealKeyMaterial(keyID string, materialID, material []byte) (sealed []byte, err error)
	// OpenSealed unseals material sealed for keyID (import wrapping keys).
	OpenSealed(keyID string, materialID, sealed []byte) ([]byte, error)
}

// Signer signs and verifies with SIGN_VERIFY keys.
type Signer interface {
	Sign(ctx context.Context, k KeyRef, alg, msgType string, msg []byte) ([]byte, error)
	Verify(ctx context.Context, k KeyRef, alg, msgType string, msg, sig []byte) error
}

// PublicKeyer returns the DER SubjectPublicKeyInfo of an asymmetric key.
type PublicKeyer interface {
	PublicKey(ctx context.Context, k KeyRef) ([]byte, error)
}

// AsymmetricCrypter encrypts and decrypts with RSA ENCRYPT_DECRYPT keys.
type AsymmetricCrypter interface {
	EncryptAsymmetric(ctx context.Context, k KeyRef, alg string, plaintext []byte) ([]byte, error)
	DecryptAsymmetric(ctx context.Context, k KeyRef, alg string, ciphertext []byte) ([]byte, error)
}

// MACer computes and verifies HMACs with GENERATE_VERIFY_MAC keys.
type MACer interface {
	GenerateMAC(ctx context.Context, k KeyRef, alg string, msg []byte) ([]byte, error)
	VerifyMAC(ctx context.Context, k KeyRef, alg string, msg, mac []byte) error
}

// KeyAgreer derives shared secrets with KEY_AGREEMENT keys.
type KeyAgreer interface {
	DeriveSharedSecret(ctx context.Context, k KeyRef, alg string, peerPublicKey []byte) ([]byte, error)
}
