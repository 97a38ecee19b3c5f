package kms

import (
	"context"

	"github.com/keyhold/keyhold/internal/store"
)

// customKeyStores holds the custom key store side of the domain: the
// connection state of each store and the backends that reach them.
type customKeyStores struct {
	s *Service
}

func newCustomKeyStores(s *Service) *customKeyStores { return &customKeyStores{s: s} }

// connected reports whether a store is CONNECTED (its keys usable).
func (c *customKeyStores) connected(account, id string) bool { return false }

// prepareKey fills a new key's custom key store fields, creating its
// material in the store.
func (c *customKeyStores) prepareKey(ctx context.Context, caller Caller, k *store.Key, in CreateKeyInput) error {
	return errorf(CustomKeyStoreNotFound, "Custom key store '%s' does not exist.", in.CustomKeyStoreID)
}

// abandonKey undoes prepareKey when the key record could not be written.
func (c *customKeyStores) abandonKey(ctx context.Context, k store.Key) {}

// destroyKeyMaterial makes a best-effort destroy of a deleted key's material.
func (c *customKeyStores) destroyKeyMaterial(ctx context.Context, k store.Key) {}

func (c *customKeyStores) failureMessage(k store.Key) string {
	return c.s.keyARN(k.AccountID, k.ID) + " is unavailable."
}

func (c *customKeyStores) generateRandom(ctx context.Context, caller Caller, id string, n int) ([]byte, error) {
	return nil, errorf(CustomKeyStoreNotFound, "Custom key store '%s' does not exist.", id)
}
