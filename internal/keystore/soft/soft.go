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

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keyspec"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/lru"
	"github.com/keyhold/keyhold/internal/rootkey"
)

// Backend is the default key store's driver (keystore.Default) for
// keyhold-held material.
type Backend struct {
	root *rootkey.Key
	// Unsealed material by key id + backing key id, bounded: with a
	// million keys in the store, memory stays proportional to the keys in
	// use (an evicted key is unsealed again on its next use).
	aeads *lru.Cache[string, cipher.AEAD]
	privs *lru.Cache[string, *keyspec.Private]
}

// CacheSize bounds how many keys' unsealed material a Backend keeps.
const CacheSize = 10000

var _ keystore.Default = (*Backend)(nil)

// New returns a backend sealing material with root.
func New(root *rootkey.Key) *Backend {
	return &Backend{root: root, aeads: lru.New[string, cipher.AEAD](CacheSize), privs: lru.New[string, *keyspec.Private](CacheSize)}
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
	ofKey := func(k string) bool { return len(k) >= len(keyID) && k[:len(keyID)] == keyID }
	b.aeads.DeleteFunc(func(k string, _ cipher.AEAD) bool { return ofKey(k) })
	b.privs.DeleteFunc(func(k string, _ *keyspec.Private) bool { return ofKey(k) })
}

func (b *Backend) aead(k keystore.KeyRef) (cipher.AEAD, error) {
	id := k.ID + string(k.BackingKeyID)
	if a, ok := b.aeads.Get(id); ok {
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
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b.aeads.Put(id, a)
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

var (
	_ keystore.MaterialMaker     = (*Backend)(nil)
	_ keystore.Signer            = (*Backend)(nil)
	_ keystore.PublicKeyer       = (*Backend)(nil)
	_ keystore.AsymmetricCrypter = (*Backend)(nil)
	_ keystore.MACer             = (*Backend)(nil)
	_ keystore.KeyAgreer         = (*Backend)(nil)
)

func newMaterialID() ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("soft: material id: %w", err)
	}
	return id, nil
}

// NewKeyMaterial generates material of any key spec, sealed.
func (b *Backend) NewKeyMaterial(keyID, spec string) (sealed, materialID []byte, err error) {
	if spec == "" || spec == keyspec.SymmetricKey {
		m, err := b.NewMaterial(keyID)
		return m.SealedMaterial, m.BackingKeyID, err
	}
	m, err := keyspec.Generate(spec)
	if err != nil {
		return nil, nil, err
	}
	defer clear(m)
	if materialID, err = newMaterialID(); err != nil {
		return nil, nil, err
	}
	sealed, err = b.root.Seal(m, materialAAD(keyID, materialID))
	return sealed, materialID, err
}

// SealKeyMaterial seals imported material.
func (b *Backend) SealKeyMaterial(keyID string, materialID, material []byte) ([]byte, error) {
	return b.root.Seal(material, materialAAD(keyID, materialID))
}

// OpenSealed unseals material sealed for keyID.
func (b *Backend) OpenSealed(keyID string, materialID, sealed []byte) ([]byte, error) {
	return b.root.Open(sealed, materialAAD(keyID, materialID))
}

// private loads (and caches) the parsed material of an asymmetric or HMAC key.
func (b *Backend) private(k keystore.KeyRef) (*keyspec.Private, error) {
	id := k.ID + string(k.BackingKeyID)
	if p, ok := b.privs.Get(id); ok {
		return p, nil
	}
	m, err := b.root.Open(k.SealedMaterial, materialAAD(k.ID, k.BackingKeyID))
	if err != nil {
		return nil, fmt.Errorf("soft: unseal material of %s: %w", k.ID, err)
	}
	defer clear(m)
	p, err := keyspec.Load(k.KeySpec, m)
	if err != nil {
		return nil, fmt.Errorf("soft: load material of %s: %w", k.ID, err)
	}
	b.privs.Put(id, p)
	return p, nil
}

func (b *Backend) Sign(_ context.Context, k keystore.KeyRef, alg, msgType string, msg []byte) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.Sign(alg, msgType, msg)
}

func (b *Backend) Verify(_ context.Context, k keystore.KeyRef, alg, msgType string, msg, sig []byte) error {
	p, err := b.private(k)
	if err != nil {
		return err
	}
	return p.Verify(alg, msgType, msg, sig)
}

func (b *Backend) PublicKey(_ context.Context, k keystore.KeyRef) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.PublicKey(), nil
}

func (b *Backend) EncryptAsymmetric(_ context.Context, k keystore.KeyRef, alg string, plaintext []byte) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.Encrypt(alg, plaintext)
}

func (b *Backend) DecryptAsymmetric(_ context.Context, k keystore.KeyRef, alg string, ciphertext []byte) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.Decrypt(alg, ciphertext)
}

func (b *Backend) GenerateMAC(_ context.Context, k keystore.KeyRef, alg string, msg []byte) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.MAC(alg, msg)
}

func (b *Backend) VerifyMAC(_ context.Context, k keystore.KeyRef, alg string, msg, mac []byte) error {
	p, err := b.private(k)
	if err != nil {
		return err
	}
	return p.VerifyMAC(alg, msg, mac)
}

func (b *Backend) DeriveSharedSecret(_ context.Context, k keystore.KeyRef, alg string, peer []byte) ([]byte, error) {
	p, err := b.private(k)
	if err != nil {
		return nil, err
	}
	return p.DeriveSharedSecret(alg, peer)
}
