// Package hsmstore is the CloudHSM key store backend: each KMS key is a
// non-extractable AES-256 key in the store's HSM cluster, labelled with the
// key ARN, and the cluster's key encrypts the data directly (AES-GCM, IV
// chosen by the HSM layer). It holds one logged-in kmsuser session per
// connected store; it never sees or keeps a password.
package hsmstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/keystore"
)

// ErrNotConnected means the key's store has no session.
var ErrNotConnected = errors.New("hsmstore: custom key store is not connected")

// Backend implements keystore.Backend for AWS_CLOUDHSM keys.
type Backend struct {
	mu       sync.RWMutex
	sessions map[string]*hsm.UserSession // custom key store id -> session
}

var _ keystore.Backend = (*Backend)(nil)

// New returns a backend with no connected stores.
func New() *Backend { return &Backend{sessions: make(map[string]*hsm.UserSession)} }

func (b *Backend) Kind() blob.Kind { return blob.KindCloudHSM }

// Attach makes a connected store's session available.
func (b *Backend) Attach(storeID string, s *hsm.UserSession) {
	b.mu.Lock()
	b.sessions[storeID] = s
	b.mu.Unlock()
}

// Detach removes a store's session and returns it (nil if none).
func (b *Backend) Detach(storeID string) *hsm.UserSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[storeID]
	delete(b.sessions, storeID)
	return s
}

// Session returns a connected store's session.
func (b *Backend) Session(storeID string) (*hsm.UserSession, error) {
	b.mu.RLock()
	s := b.sessions[storeID]
	b.mu.RUnlock()
	if s == nil {
		return nil, ErrNotConnected
	}
	return s, nil
}

// Encrypt encrypts in the cluster: payload = fields(iv, ciphertext||tag).
func (b *Backend) Encrypt(ctx context.Context, k keystore.KeyRef, plaintext, aad []byte) ([]byte, error) {
	s, err := b.Session(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	iv, ct, err := s.Encrypt(ctx, k.ARN, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("hsmstore.Encrypt: %w", err)
	}
	return blob.Fields(iv, ct), nil
}

// Decrypt decrypts in the cluster.
func (b *Backend) Decrypt(ctx context.Context, k keystore.KeyRef, payload, aad []byte) ([]byte, error) {
	f, err := blob.SplitFields(payload, 2)
	if err != nil {
		return nil, keystore.ErrInvalidCiphertext
	}
	s, err := b.Session(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	pt, err := s.Decrypt(ctx, k.ARN, f[0], f[1], aad)
	if errors.Is(err, hsm.ErrDecrypt) {
		return nil, keystore.ErrInvalidCiphertext
	}
	if err != nil {
		return nil, fmt.Errorf("hsmstore.Decrypt: %w", err)
	}
	return pt, nil
}
