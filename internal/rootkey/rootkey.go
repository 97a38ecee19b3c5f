// Package rootkey holds the key that seals everything keyhold stores: KMS key
// material, custom key store secrets, access key secrets. The root key never
// leaves this package and is never logged.
//
// Source today: a file created at first start with mode 0600 (the laptop
// default). A PKCS#11-held root key is a later addition behind the same type.
package rootkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
)

const (
	keyLen  = 32
	version = 1
)

// ErrOpen means a sealed value failed authentication (wrong root key or
// tampered data).
var ErrOpen = errors.New("rootkey: sealed value failed authentication")

// Key seals and opens values with AES-256-GCM. Safe for concurrent use.
type Key struct {
	aead cipher.AEAD
	// Source says where the key came from, for the operator (never the key).
	Source string
}

// String never prints key bytes.
func (k *Key) String() string { return "rootkey(" + k.Source + ")" }

// LoadOrCreateFile reads the root key from path, creating it (0600, 32
// random bytes, fsynced) when missing.
func LoadOrCreateFile(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, keyLen)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("rootkey: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("rootkey: create %s: %w", path, err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return nil, fmt.Errorf("rootkey: write: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("rootkey: sync: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("rootkey: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("rootkey: read %s: %w", path, err)
	}
	if len(b) != keyLen {
		return nil, fmt.Errorf("rootkey: %s holds %d bytes, want %d", path, len(b), keyLen)
	}
	k, err := New(b, "file "+path)
	clear(b)
	return k, err
}

// New builds a Key from 32 bytes (copied).
func New(raw []byte, source string) (*Key, error) {
	if len(raw) != keyLen {
		return nil, fmt.Errorf("rootkey: need %d bytes", keyLen)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead, Source: source}, nil
}

// Seal encrypts plaintext bound to aad (a label saying what the value is,
// e.g. the key ARN), as version || nonce || ciphertext.
func (k *Key) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+12, 1+12+len(plaintext)+16)
	out[0] = version
	if _, err := rand.Read(out[1:13]); err != nil {
		return nil, fmt.Errorf("rootkey.Seal: %w", err)
	}
	return k.aead.Seal(out, out[1:13], plaintext, aad), nil
}

// Open reverses Seal.
func (k *Key) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+12+16 || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := k.aead.Open(nil, sealed[1:13], sealed[13:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
