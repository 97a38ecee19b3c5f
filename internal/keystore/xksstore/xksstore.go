// Package xksstore is the external key store backend (Origin
// EXTERNAL_KEY_STORE): double encryption, as AWS KMS does it. keyhold's own
// material (sealed by the root key, see keystore/soft) encrypts first, bound
// to the blob header and the encryption context; the external key behind the
// store's XKS proxy then encrypts that result, bound to the blob header.
// Decryption runs in reverse. Every field the proxy returns (IV, tag,
// ciphertextMetadata, ciphertext) is kept in the payload.
//
// It holds one XKS client per connected store and never sees a store's
// configuration or secret beyond that client. It never logs, and never puts
// plaintext into an error.
package xksstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/xks/client"
)

// ErrNotConnected means the key's store has no client: it is not CONNECTED.
var ErrNotConnected = errors.New("xksstore: external key store is not connected")

// ErrInnerLayer means the proxy decrypted but keyhold's own layer did not
// authenticate: a wrong encryption context, or a ciphertext of another key.
// It wraps keystore.ErrInvalidCiphertext.
var ErrInnerLayer = fmt.Errorf("xksstore: inner layer: %w", keystore.ErrInvalidCiphertext)

// API names the XKS call a backend is about to make, for request metadata.
type API string

const (
	APIEncrypt API = "encrypt"
	APIDecrypt API = "decrypt"
)

// MetadataFunc returns the requestMetadata for one proxy call made on ctx
// for key k. The kms package supplies it (the caller, the operation, the
// request id live in its context values).
type MetadataFunc func(ctx context.Context, k keystore.KeyRef, api API) client.RequestMetadata

// Backend implements keystore.Backend for EXTERNAL_KEY_STORE keys. It is
// safe for concurrent use.
type Backend struct {
	inner *soft.Backend
	meta  MetadataFunc

	mu      sync.RWMutex
	clients map[string]*client.Client // custom key store id -> client
}

var _ keystore.Backend = (*Backend)(nil)

// New returns a backend with no connected stores. inner holds keyhold's own
// layer; meta builds the request metadata of each proxy call.
func New(inner *soft.Backend, meta MetadataFunc) *Backend {
	return &Backend{inner: inner, meta: meta, clients: make(map[string]*client.Client)}
}

func (b *Backend) Kind() blob.Kind { return blob.KindXKS }

// Attach makes a connected store's client available, replacing (and
// returning) the previous one, whose idle connections the caller may close.
func (b *Backend) Attach(storeID string, c *client.Client) *client.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.clients[storeID]
	b.clients[storeID] = c
	return old
}

// Detach removes a store's client and returns it (nil if none).
func (b *Backend) Detach(storeID string) *client.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.clients[storeID]
	delete(b.clients, storeID)
	return c
}

// Client returns a connected store's client.
func (b *Backend) Client(storeID string) (*client.Client, error) {
	b.mu.RLock()
	c := b.clients[storeID]
	b.mu.RUnlock()
	if c == nil {
		return nil, ErrNotConnected
	}
	return c, nil
}

// Stores lists the ids of the stores that have a client.
func (b *Backend) Stores() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.clients))
	for id := range b.clients {
		out = append(out, id)
	}
	return out
}

// ProxyAAD is the additional authenticated data sent to the proxy: the
// 34-byte blob header (key id and material id), as AWS sends its
// ciphertext blob header. The encryption context is bound by the inner
// layer only, so a wrong context fails as an invalid ciphertext in keyhold,
// not at the proxy.
func ProxyAAD(aad []byte) []byte {
	if len(aad) < blob.HeaderLen {
		return aad
	}
	return aad[:blob.HeaderLen]
}

// Encrypt returns fields(iv, tag, ciphertextMetadata, proxy ciphertext),
// where the proxy ciphertext encrypts keyhold's inner payload
// (iv || ciphertext || tag under the key's own material).
func (b *Backend) Encrypt(ctx context.Context, k keystore.KeyRef, plaintext, aad []byte) ([]byte, error) {
	c, err := b.Client(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	inner, err := b.inner.Encrypt(ctx, k, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("xksstore.Encrypt: inner layer: %w", err)
	}
	md := b.meta(ctx, k, APIEncrypt)
	res, err := Retry(ctx, func() (client.EncryptResult, error) {
		return c.Encrypt(ctx, k.XksKeyID, md, inner, ProxyAAD(aad))
	})
	if err != nil {
		return nil, fmt.Errorf("xksstore.Encrypt: %w", err)
	}
	return blob.Fields(res.IV, res.AuthTag, res.CiphertextMetadata, res.Ciphertext), nil
}

// Decrypt asks the proxy to remove the outer layer, then opens the inner one.
func (b *Backend) Decrypt(ctx context.Context, k keystore.KeyRef, payload, aad []byte) ([]byte, error) {
	f, err := blob.SplitFields(payload, 4)
	if err != nil {
		return nil, keystore.ErrInvalidCiphertext
	}
	iv, tag, md, ct := f[0], f[1], f[2], f[3]
	if len(md) == 0 {
		md = nil
	}
	c, err := b.Client(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	rmd := b.meta(ctx, k, APIDecrypt)
	inner, err := Retry(ctx, func() ([]byte, error) {
		return c.Decrypt(ctx, k.XksKeyID, rmd, ct, iv, tag, ProxyAAD(aad), md)
	})
	if err != nil {
		return nil, fmt.Errorf("xksstore.Decrypt: %w", err)
	}
	defer clear(inner)
	pt, err := b.inner.Decrypt(ctx, k, inner, aad)
	if err != nil {
		if errors.Is(err, keystore.ErrInvalidCiphertext) {
			return nil, ErrInnerLayer
		}
		return nil, fmt.Errorf("xksstore.Decrypt: inner layer: %w", err)
	}
	return pt, nil
}

// Retry runs call again once when it failed below HTTP without a timeout
// (a reset or a broken pipe on a pooled connection the proxy closed, e.g.
// across a proxy restart; a refused connection fails fast again). The
// client itself retries timeouts.
func Retry[T any](ctx context.Context, call func() (T, error)) (T, error) {
	v, err := call()
	var te *client.TransportError
	if err != nil && errors.As(err, &te) && te.Kind == client.Unreachable && ctx.Err() == nil {
		return call()
	}
	return v, err
}
