// Package soft is the default key store: 256-bit AES-GCM material generated
// by keyhold and stored only sealed by the root key. Unsealed material lives
// in memory (as cipher.AEAD values) and is never logged or returned.
package soft

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/rootkey"
)

// Backend is the default key store's driver (keystore.Default) for
// keyhold-held material.
type Backend struct {
	root  *rootkey.Key
	mu    sync.RWMutex
	aeads map[string]cipher.AEAD // key id + backing key id -> AEAD
}

var _ keystore.Default = (*Backend)(nil)

// New returns a backend sealing material with root.
func New(root *rootkey.Key) *Backend {
	return &Backend{root: root, aeads: make(map[string]cipher.AEAD)}
}

func (b *Backend) Kind() blob.Kind { return blob.KindSoft }

// NewMaterial generates fresh material for a key and returns it sealed under
// the root key (bound to the key id) with its backing key id.
func (b *Backend) NewMaterial(keyID string) (keystore.Material, error) {
	m := make([]byte, 32)
	defer clear(m)
	backingKeyID := make([]byte, 16)
	if _, err := rand.Read(m); err != nil {
		return keystore.Material{}, fmt.Errorf("soft.NewMaterial: %w", err)
	}
	if _, err := rand.Read(backingKeyID); err != nil {
		return keystore.Material{}, fmt.Errorf("soft.NewMaterial: %w", err)
	}
	sealed, err := b.root.Seal(m, materialAAD(keyID, backingKeyID))
	if err != nil {
		return keystore.Material{}, fmt.Errorf("soft.NewMaterial: %w", err)
	}
	return keystore.Material{BackingKeyID: backingKeyID, SealedMaterial: sealed}, nil
}

func materialAAD(keyID string, backing []byte) []byte {
	return append([]byte("keyhold-material:"+keyID+":"), backing...)
}

// Forget drops cached material of a deleted key.
func (b *Backend) Forget(keyID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.aeads {
		if len(k) >= len(keyID) && k[:len(keyID)] == keyID {
			delete(b.aeads, k)
		}
	}
}

func (b *Backend) aead(k keystore.KeyRef) (cipher.AEAD, error) {
	id := k.ID + string(k.BackingKeyID)
	b.mu.RLock()
	a := b.aeads[id]
	b.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	m, err := b.root.Open(k.SealedMaterial, materialAAD(k.ID, k.BackingKeyID))
	if err != nil {
		return nil, fmt.Errorf("soft: unseal material of %s: %w", k.ID, err)
	}
	defer clear(m)
	block, err := aes.NewCipher(m)
	if err != nil {
		return nil, err
	}
	a, err = cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.aeads[id] = a
	b.mu.Unlock()
	return a, nil
}

// Encrypt seals plaintext: payload = iv(12) || ciphertext || tag.
func (b *Backend) Encrypt(_ context.Context, k keystore.KeyRef, _ keystore.Call, plaintext, aad []byte) ([]byte, error) {
	a, err := b.aead(k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 12, 12+len(plaintext)+16)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("soft.Encrypt: %w", err)
	}
	return a.Seal(out, out, plaintext, aad), nil
}

// Decrypt opens a payload made by Encrypt.
func (b *Backend) Decrypt(_ context.Context, k keystore.KeyRef, _ keystore.Call, payload, aad []byte) ([]byte, error) {
	if len(payload) < 12+16 {
		return nil, keystore.ErrInvalidCiphertext
	}
	a, err := b.aead(k)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, payload[:12], payload[12:], aad)
	if err != nil {
		return nil, keystore.ErrInvalidCiphertext
	}
	return pt, nil
}
