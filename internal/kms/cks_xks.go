package kms

import (
	"context"

	"github.com/keyhold/keyhold/internal/store"
)

// xksDriver is the external-key-store half of custom key stores: what
// differs from CloudHSM when a store is created, updated, connected, used
// for a new key, or fails. xks_driver.go implements it.
type xksDriver interface {
	// validateCreate checks a new store's XKS fields (and contacts a
	// PUBLIC_ENDPOINT proxy) and returns its configuration and secret.
	validateCreate(ctx context.Context, caller Caller, in CreateCustomKeyStoreInput, all []store.CustomKeyStore) (cksConfig, cksSecret, error)
	// update applies an UpdateCustomKeyStore to cfg and sec; live is true
	// when a connected store's client must pick the change up.
	update(ctx context.Context, caller Caller, rec store.CustomKeyStore, in UpdateCustomKeyStoreInput, state string, cfg *cksConfig, sec *cksSecret, all []store.CustomKeyStore) (live bool, err error)
	reconfigure(ctx context.Context, rec store.CustomKeyStore, cfg cksConfig, sec cksSecret)
	// checkConnect raises the exceptions ConnectCustomKeyStore throws at once.
	checkConnect(ctx context.Context, rec store.CustomKeyStore, cfg cksConfig) error
	// connect runs asynchronously; it returns "" or a ConnectionErrorCode.
	connect(ctx context.Context, rec store.CustomKeyStore) string
	release(rec store.CustomKeyStore)
	prepareKey(ctx context.Context, caller Caller, rec store.CustomKeyStore, cfg cksConfig, k *store.Key, xksKeyID string) error
	failureMessage(k store.Key) string
}

// newXKSDriver builds the external key store driver and registers its
// key store backend.
func newXKSDriver(s *Service, o XKSOptions) xksDriver {
	d := newXKS(s, o)
	s.RegisterBackend(d.backend())
	return d
}

// noXKS is the driver a customKeyStores holds until New installs the real
// one (newCustomKeyStores starts with it).
type noXKS struct{}

func (noXKS) unsupported() error {
	return errorf(UnsupportedOperation, "External key stores are not enabled on this keyhold.")
}

func (n noXKS) validateCreate(context.Context, Caller, CreateCustomKeyStoreInput, []store.CustomKeyStore) (cksConfig, cksSecret, error) {
	return cksConfig{}, cksSecret{}, n.unsupported()
}

func (n noXKS) update(context.Context, Caller, store.CustomKeyStore, UpdateCustomKeyStoreInput, string, *cksConfig, *cksSecret, []store.CustomKeyStore) (bool, error) {
	return false, n.unsupported()
}

func (noXKS) reconfigure(context.Context, store.CustomKeyStore, cksConfig, cksSecret) {}

func (n noXKS) checkConnect(context.Context, store.CustomKeyStore, cksConfig) error {
	return n.unsupported()
}

func (noXKS) connect(context.Context, store.CustomKeyStore) string { return "INTERNAL_ERROR" }

func (noXKS) release(store.CustomKeyStore) {}

func (n noXKS) prepareKey(context.Context, Caller, store.CustomKeyStore, cksConfig, *store.Key, string) error {
	return n.unsupported()
}

func (noXKS) failureMessage(store.Key) string { return xksMsgNotConnected }
