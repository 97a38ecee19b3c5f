package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/pkcs11"
)

// Errors a Backend returns (wrapped); the handler maps them to XKS errors.
var (
	ErrKeyNotFound = errors.New("proxy: key not found")         // KeyNotFoundException
	ErrKeyUsage    = errors.New("proxy: key usage not allowed") // InvalidKeyUsageException
	ErrDecrypt     = errors.New("proxy: ciphertext is invalid") // InvalidCiphertextException
)

// KeyInfo is what a Backend knows about a key.
type KeyInfo struct {
	Spec                   string   // e.g. "AES_256"
	Usage                  []string // upper case, e.g. ENCRYPT, DECRYPT, WRAP
	CanEncrypt, CanDecrypt bool
}

// EKMInfo describes the external key manager behind a Backend, for health.
type EKMInfo struct {
	Vendor, Model, ID string
}

// Backend does the cryptography for one key store. Implementations must be
// safe for concurrent use. Encrypt and Decrypt use AES-256-GCM with a 128-bit
// tag; ciphertext carries the tag at its end.
type Backend interface {
	// Key describes the key with this label; errors wrap ErrKeyNotFound.
	Key(ctx context.Context, label string) (KeyInfo, error)
	// Encrypt returns ciphertext||tag and the IV used (iv unless the HSM
	// writes its own). Errors wrap ErrKeyNotFound or ErrKeyUsage.
	Encrypt(ctx context.Context, label string, iv, aad, plaintext []byte) (ciphertextWithTag, ivUsed []byte, err error)
	// Decrypt reverses Encrypt; errors wrap ErrDecrypt, ErrKeyNotFound or
	// ErrKeyUsage.
	Decrypt(ctx context.Context, label string, iv, aad, ciphertextWithTag []byte) ([]byte, error)
	// EKM describes the key manager.
	EKM(ctx context.Context) (EKMInfo, error)
	Close() error
}

// cachedKeys is a Backend that can describe a key from memory, without a
// call to the key manager, when it has done so recently: the handler then
// needs no goroutine and timer around the lookup (see Server.call).
type cachedKeys interface {
	CachedKey(label string) (KeyInfo, bool)
}

// keyCacheTTL bounds how long key attributes read from a token are reused
// before they are read again (a key's usage flags could be changed on the
// token).
const keyCacheTTL = 30 * time.Second

// tokenBackend is a Backend over a PKCS#11 token.
type tokenBackend struct {
	mod  *pkcs11.Module
	sess *pkcs11.Session

	mu   sync.Mutex
	keys map[string]cachedKey
}

type cachedKey struct {
	key     pkcs11.Key
	info    KeyInfo
	fetched time.Time
}

// tokenBackends shares one logged-in Session per token among prefixes.
type tokenBackends struct {
	mu   sync.Mutex
	open map[string]*sharedBackend
}

type sharedBackend struct {
	*tokenBackend
	refs   int
	parent *tokenBackends
	id     string
}

func (b *sharedBackend) Close() error {
	p := b.parent
	p.mu.Lock()
	b.refs--
	last := b.refs == 0
	if last {
		delete(p.open, b.id)
	}
	p.mu.Unlock()
	if !last {
		return nil
	}
	return b.tokenBackend.Close()
}

func (p *tokenBackends) get(cfg PKCS11Config) (Backend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := cfg.Module + "\x00" + cfg.TokenLabel
	if b, ok := p.open[id]; ok {
		b.refs++
		return b, nil
	}
	tb, err := openTokenBackend(cfg)
	if err != nil {
		return nil, err
	}
	sb := &sharedBackend{tokenBackend: tb, refs: 1, parent: p, id: id}
	p.open[id] = sb
	return sb, nil
}

// openTokenBackend opens the module, finds the token and logs in as user.
func openTokenBackend(cfg PKCS11Config) (*tokenBackend, error) {
	mod, err := pkcs11.Open(cfg.Module)
	if err != nil {
		return nil, fmt.Errorf("proxy: PKCS#11 module %s: %w", cfg.Module, err)
	}
	slot, err := mod.FindToken(cfg.TokenLabel)
	if err != nil {
		mod.Close()
		return nil, fmt.Errorf("proxy: token %q (SOFTHSM2_CONF=%s): %w", cfg.TokenLabel, os.Getenv("SOFTHSM2_CONF"), err)
	}
	sess, err := mod.OpenSession(slot, pkcs11.User, cfg.UserPIN)
	if err != nil {
		mod.Close()
		return nil, fmt.Errorf("proxy: login to token %q: %w", cfg.TokenLabel, err)
	}
	return &tokenBackend{mod: mod, sess: sess, keys: map[string]cachedKey{}}, nil
}

func (b *tokenBackend) Close() error {
	err := b.sess.Close()
	if cerr := b.mod.Close(); err == nil {
		err = cerr
	}
	return err
}

func (b *tokenBackend) key(label string) (pkcs11.Key, error) {
	b.mu.Lock()
	c, ok := b.keys[label]
	b.mu.Unlock()
	if ok && time.Since(c.fetched) < keyCacheTTL {
		return c.key, nil
	}
	k, err := b.sess.FindKey(label)
	if err != nil {
		b.forget(label)
		return pkcs11.Key{}, mapTokenError(err)
	}
	b.mu.Lock()
	b.keys[label] = cachedKey{key: k, info: keyInfo(k), fetched: time.Now()}
	b.mu.Unlock()
	return k, nil
}

// CachedKey describes the key with this label if it was read from the
// token less than keyCacheTTL ago.
func (b *tokenBackend) CachedKey(label string) (KeyInfo, bool) {
	b.mu.Lock()
	c, ok := b.keys[label]
	b.mu.Unlock()
	if !ok || time.Since(c.fetched) >= keyCacheTTL {
		return KeyInfo{}, false
	}
	return c.info, true
}

func (b *tokenBackend) forget(label string) {
	b.mu.Lock()
	delete(b.keys, label)
	b.mu.Unlock()
}

func mapTokenError(err error) error {
	switch {
	case errors.Is(err, pkcs11.ErrKeyNotFound):
		return fmt.Errorf("%w: %w", ErrKeyNotFound, err)
	case errors.Is(err, pkcs11.ErrKeyFunctionNotAllowed):
		return fmt.Errorf("%w: %w", ErrKeyUsage, err)
	case errors.Is(err, pkcs11.ErrDecrypt):
		return fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return err
}

func (b *tokenBackend) Key(_ context.Context, label string) (KeyInfo, error) {
	k, err := b.key(label)
	if err != nil {
		return KeyInfo{}, err
	}
	return keyInfo(k), nil
}

// keyInfo describes a token key. Its Usage is shared by every caller
// given it from the cache: read only.
func keyInfo(k pkcs11.Key) KeyInfo {
	info := KeyInfo{Spec: k.Spec(), CanEncrypt: k.Usage.Encrypt, CanDecrypt: k.Usage.Decrypt}
	for _, u := range []struct {
		on   bool
		name string
	}{
		{k.Usage.Encrypt, "ENCRYPT"}, {k.Usage.Decrypt, "DECRYPT"},
		{k.Usage.Sign, "SIGN"}, {k.Usage.Verify, "VERIFY"},
		{k.Usage.Wrap, "WRAP"}, {k.Usage.Unwrap, "UNWRAP"},
	} {
		if u.on {
			info.Usage = append(info.Usage, u.name)
		}
	}
	if info.Usage == nil {
		info.Usage = []string{}
	}
	return info
}

func (b *tokenBackend) Encrypt(_ context.Context, label string, iv, aad, pt []byte) ([]byte, []byte, error) {
	k, err := b.key(label)
	if err != nil {
		return nil, nil, err
	}
	ct, ivUsed, err := b.sess.EncryptGCM(k, iv, aad, pt)
	if errors.Is(err, pkcs11.ErrKeyNotFound) {
		b.forget(label)
	}
	return ct, ivUsed, mapTokenError(err)
}

func (b *tokenBackend) Decrypt(_ context.Context, label string, iv, aad, ct []byte) ([]byte, error) {
	k, err := b.key(label)
	if err != nil {
		return nil, err
	}
	pt, err := b.sess.DecryptGCM(k, iv, aad, ct)
	if errors.Is(err, pkcs11.ErrKeyNotFound) {
		b.forget(label)
	}
	return pt, mapTokenError(err)
}

func (b *tokenBackend) EKM(context.Context) (EKMInfo, error) {
	ti, err := b.sess.TokenInfo()
	if err != nil {
		return EKMInfo{}, err
	}
	return EKMInfo{Vendor: ti.ManufacturerID, Model: ti.Model, ID: ti.Label + "/" + ti.SerialNumber}, nil
}
