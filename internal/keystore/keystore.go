// Package keystore defines where a KMS key's cryptography happens. The soft
// backend (soft/) holds material sealed by the root key; the CloudHSM and
// XKS backends reach a cluster or an external key manager. A backend only
// does symmetric AES-GCM, because AWS custom key stores only do that.
//
// Backends never see key policies, grants or key states: the kms package
// decides whether a call may run before a backend is asked.
package keystore

import (
	"context"
	"errors"

	"github.com/keyhold/keyhold/internal/blob"
)

// ErrInvalidCiphertext means the payload failed authentication: wrong key,
// wrong encryption context, or tampered bytes.
var ErrInvalidCiphertext = errors.New("keystore: invalid ciphertext")

// KeyRef is what a backend needs to know about a KMS key.
type KeyRef struct {
	AccountID        string
	ID               string
	ARN              string
	BackingKeyID     []byte
	SealedMaterial   []byte
	CustomKeyStoreID string
	XksKeyID         string
	// KeySpec is the key's spec (SYMMETRIC_DEFAULT, RSA_2048, HMAC_256, ...).
	KeySpec string
}

// Backend encrypts and decrypts for keys of one kind. Implementations are
// safe for concurrent use.
type Backend interface {
	Kind() blob.Kind
	// Encrypt returns the store-specific payload that follows the blob
	// header. aad already binds the header and the encryption context.
	Encrypt(ctx context.Context, k KeyRef, plaintext, aad []byte) ([]byte, error)
	// Decrypt returns the plaintext, or an error wrapping
	// ErrInvalidCiphertext when authentication fails.
	Decrypt(ctx context.Context, k KeyRef, payload, aad []byte) ([]byte, error)
}
