//go:build cgo

package pkcs11

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// maxIdle bounds how many idle PKCS#11 sessions a Session keeps for reuse.
// Bursts beyond it open extra sessions that are closed when released.
const maxIdle = 64

// Session is a logged-in handle on one token: one login for the process and
// a pool of PKCS#11 sessions, one per concurrent caller, created lazily and
// reused. All methods are safe for concurrent use.
//
// Login state is shared by every Session of the same token in the process (a
// Cryptoki rule): a second OpenSession as the same user with the same PIN
// shares it; Logout on any of them logs all of them out, and the others log
// in again on their next call.
type Session struct {
	m    *Module
	slot uint
	user UserType

	anchorMu sync.Mutex        // serialises use of anchor
	anchor   p11.SessionHandle // kept open so the token stays logged in

	mu       sync.Mutex
	pin      secret
	idle     []p11.SessionHandle
	closed   bool
	loggedIn bool
	gen      uint64                      // bumped on every (re)login: handles of an older gen are stale
	handles  map[string]p11.ObjectHandle // label -> handle, valid for gen
}

// OpenSession logs in to the token in slot as user with pin and returns the
// Session. Errors wrap ErrPINIncorrect, ErrPINLocked, ErrUserPINNotInitialized,
// ErrAnotherUserLoggedIn or ErrTokenNotInitialized where the library says so.
// The PIN is kept in memory (never printed) to log in again after the token
// was logged out underneath.
func (m *Module) OpenSession(slot uint, user UserType, pin string) (*Session, error) {
	needLogin, err := m.acquireLogin(slot, user, pin)
	if err != nil {
		return nil, err
	}
	anchor, err := m.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		m.releaseLogin(slot)
		return nil, wrap("OpenSession", err)
	}
	if needLogin {
		err := m.ctx.Login(anchor, uint(user), pin)
		if err != nil && !hasCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
			_ = m.ctx.CloseSession(anchor)
			m.releaseLogin(slot)
			return nil, wrap("OpenSession", err)
		}
	}
	return &Session{
		m: m, slot: slot, user: user, anchor: anchor, pin: secret(pin),
		loggedIn: true, gen: 1, handles: map[string]p11.ObjectHandle{},
	}, nil
}

// Slot is the slot the Session is bound to.
func (s *Session) Slot() uint { return s.slot }

// TokenInfo reports the token's current description.
func (s *Session) TokenInfo() (TokenInfo, error) {
	ts, err := s.m.Tokens()
	if err != nil {
		return TokenInfo{}, err
	}
	for _, t := range ts {
		if t.Slot == s.slot {
			return t, nil
		}
	}
	return TokenInfo{}, fmt.Errorf("pkcs11.TokenInfo: %w", ErrTokenNotFound)
}

// get takes an idle PKCS#11 session or opens one.
func (s *Session) get() (p11.SessionHandle, uint64, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, 0, ErrSessionClosed
	}
	gen := s.gen
	if n := len(s.idle); n > 0 {
		h := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return h, gen, nil
	}
	s.mu.Unlock()
	h, err := s.m.ctx.OpenSession(s.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return 0, 0, err
	}
	return h, gen, nil
}

// put returns h to the pool, or closes it when the pool is full, the Session
// closed, or the handle broken.
func (s *Session) put(h p11.SessionHandle, err error) {
	broken := hasCode(err, p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED,
		p11.CKR_OPERATION_ACTIVE, p11.CKR_DEVICE_ERROR, p11.CKR_DEVICE_REMOVED)
	s.mu.Lock()
	if !broken && !s.closed && len(s.idle) < maxIdle {
		s.idle = append(s.idle, h)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	_ = s.m.ctx.CloseSession(h)
}

// do runs fn on a pooled session. If the token turned out to be logged out
// underneath (another Session's Logout, a device reset), it logs in again and
// retries once.
func (s *Session) do(op string, fn func(h p11.SessionHandle, gen uint64) error) error {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		mine, gen := s.loggedIn, s.gen
		s.mu.Unlock()
		if !mine {
			return fmt.Errorf("pkcs11.%s: %w", op, ErrUserNotLoggedIn)
		}
		if !s.m.loginActive(s.slot) {
			// Another Session of this token logged out: objects are
			// invisible until someone logs in again.
			if err := s.relogin(gen); err != nil {
				return err
			}
		}
		h, gen, err := s.get()
		if err != nil {
			return err
		}
		err = fn(h, gen)
		s.put(h, err)
		if err == nil || attempt > 0 || !hasCode(err, p11.CKR_USER_NOT_LOGGED_IN) {
			return err
		}
		if lerr := s.relogin(gen); lerr != nil {
			return lerr
		}
	}
}

// relogin logs in again if no one did since gen.
func (s *Session) relogin(gen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loggedIn {
		return fmt.Errorf("pkcs11: %w", ErrUserNotLoggedIn)
	}
	if s.gen != gen && s.m.loginActive(s.slot) {
		return nil
	}
	s.anchorMu.Lock()
	err := s.m.ctx.Login(s.anchor, uint(s.user), string(s.pin))
	s.anchorMu.Unlock()
	if err != nil && !hasCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		return wrap("Login", err)
	}
	s.m.setLoginActive(s.slot, true)
	s.gen++
	s.handles = map[string]p11.ObjectHandle{}
	return nil
}

// Login logs in again after Logout, with pin (which replaces the remembered
// one). Handles found before are stale afterwards and re-found by label.
func (s *Session) Login(pin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSessionClosed
	}
	s.anchorMu.Lock()
	err := s.m.ctx.Login(s.anchor, uint(s.user), pin)
	s.anchorMu.Unlock()
	if hasCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) && !s.m.samePIN(s.slot, pin) {
		// A sibling logged in already, so the token did not check this PIN.
		return fmt.Errorf("pkcs11.Login: %w", ErrPINIncorrect)
	}
	if err != nil && !hasCode(err, p11.CKR_USER_ALREADY_LOGGED_IN) {
		return wrap("Login", err)
	}
	s.pin = secret(pin)
	s.m.updateLoginPIN(s.slot, pin)
	s.m.setLoginActive(s.slot, true)
	s.loggedIn = true
	s.gen++
	s.handles = map[string]p11.ObjectHandle{}
	return nil
}

// Logout logs the token out for the whole process (Cryptoki login state is
// per application). This Session fails with ErrUserNotLoggedIn until Login;
// other Sessions of the token log in again on their next call.
func (s *Session) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSessionClosed
	}
	s.anchorMu.Lock()
	err := s.m.ctx.Logout(s.anchor)
	s.anchorMu.Unlock()
	s.m.setLoginActive(s.slot, false)
	s.loggedIn = false
	s.gen++
	s.handles = map[string]p11.ObjectHandle{}
	if hasCode(err, p11.CKR_USER_NOT_LOGGED_IN) {
		return nil
	}
	return wrap("Logout", err)
}

// Close closes every PKCS#11 session of this Session; the last Session of a
// token logs it out. Session keys (non-persistent) created by it are gone
// afterwards. Close is idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	idle := s.idle
	s.idle = nil
	loggedIn := s.loggedIn
	s.mu.Unlock()
	for _, h := range idle {
		_ = s.m.ctx.CloseSession(h)
	}
	var err error
	if s.m.releaseLogin(s.slot) && loggedIn {
		if lerr := s.m.ctx.Logout(s.anchor); lerr != nil && !hasCode(lerr, p11.CKR_USER_NOT_LOGGED_IN) {
			err = wrap("Close", lerr)
		}
	}
	if cerr := s.m.ctx.CloseSession(s.anchor); cerr != nil && err == nil {
		err = wrap("Close", cerr)
	}
	return err
}

// InitPIN sets the normal user's PIN. The Session must be logged in as SO.
func (s *Session) InitPIN(newUserPIN string) error {
	return wrap("InitPIN", s.do("InitPIN", func(h p11.SessionHandle, _ uint64) error {
		return s.m.ctx.InitPIN(h, newUserPIN)
	}))
}

// SetPIN changes the PIN of the user this Session is logged in as. Errors
// wrap ErrPINIncorrect when old is wrong and ErrPINInvalid when new is
// unacceptable to the token.
func (s *Session) SetPIN(old, new string) error {
	err := s.do("SetPIN", func(h p11.SessionHandle, _ uint64) error {
		return s.m.ctx.SetPIN(h, old, new)
	})
	if err != nil {
		return wrap("SetPIN", err)
	}
	s.mu.Lock()
	s.pin = secret(new)
	s.mu.Unlock()
	s.m.updateLoginPIN(s.slot, new)
	return nil
}

// GenerateRandom returns n bytes from the token's random number generator.
func (s *Session) GenerateRandom(n int) ([]byte, error) {
	var out []byte
	err := s.do("GenerateRandom", func(h p11.SessionHandle, _ uint64) error {
		var err error
		out, err = s.m.ctx.GenerateRandom(h, n)
		return err
	})
	return out, wrap("GenerateRandom", err)
}

// KeyUsage is what a key's attributes allow.
type KeyUsage struct {
	Encrypt, Decrypt, Sign, Verify, Wrap, Unwrap bool
}

// Key is a secret key on the token, as last read from its attributes. Its
// handle is private and checked against the Session's login generation, so a
// Key stays usable across re-logins (it is re-found by label).
type Key struct {
	Label       string
	ID          []byte
	KeyType     uint // CKK_*, e.g. CKK_AES
	Bits        int  // from CKA_VALUE_LEN
	Usage       KeyUsage
	Persistent  bool // CKA_TOKEN
	Extractable bool // CKA_EXTRACTABLE

	handle p11.ObjectHandle
	gen    uint64
}

// Spec is the key's type and size as the XKS API spells them, e.g. AES_256.
func (k Key) Spec() string {
	name := "UNKNOWN"
	switch k.KeyType {
	case p11.CKK_AES:
		name = "AES"
	case p11.CKK_GENERIC_SECRET:
		name = "GENERIC_SECRET"
	case p11.CKK_DES3:
		name = "DES3"
	}
	return fmt.Sprintf("%s_%d", name, k.Bits)
}

// GenerateAESKey creates a 256-bit AES key (CKM_AES_KEY_GEN) that is
// private, sensitive and never extractable, with the given label, id and
// usage. persistent=false makes a session key that lives until Close. A label
// already in use gives ErrDuplicateKey.
func (s *Session) GenerateAESKey(label string, id []byte, usage KeyUsage, persistent bool) (Key, error) {
	if _, err := s.FindKey(label); err == nil {
		return Key{}, fmt.Errorf("pkcs11.GenerateAESKey %q: %w", label, ErrDuplicateKey)
	} else if !errors.Is(err, ErrKeyNotFound) {
		return Key{}, err
	}
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, persistent),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, usage.Encrypt),
		p11.NewAttribute(p11.CKA_DECRYPT, usage.Decrypt),
		p11.NewAttribute(p11.CKA_WRAP, usage.Wrap),
		p11.NewAttribute(p11.CKA_UNWRAP, usage.Unwrap),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	if len(id) > 0 {
		tmpl = append(tmpl, p11.NewAttribute(p11.CKA_ID, id))
	}
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}
	if !persistent {
		// Session objects die with the session that made them, so they are
		// made on the anchor, which lives as long as the Session.
		s.anchorMu.Lock()
		_, err := s.m.ctx.GenerateKey(s.anchor, mech, tmpl)
		s.anchorMu.Unlock()
		if err != nil {
			return Key{}, wrap("GenerateAESKey", err)
		}
	} else {
		err := s.do("GenerateAESKey", func(h p11.SessionHandle, _ uint64) error {
			_, err := s.m.ctx.GenerateKey(h, mech, tmpl)
			return err
		})
		if err != nil {
			return Key{}, wrap("GenerateAESKey", err)
		}
	}
	return s.FindKey(label)
}

// FindKey finds the one secret key with this label (token or session object)
// and reads its attributes. Errors wrap ErrKeyNotFound or ErrDuplicateKey.
func (s *Session) FindKey(label string) (Key, error) {
	var k Key
	err := s.do("FindKey", func(h p11.SessionHandle, gen uint64) error {
		oh, err := s.find(h, label)
		if err != nil {
			return err
		}
		k, err = s.readKey(h, oh)
		if err != nil {
			return err
		}
		k.handle, k.gen = oh, gen
		s.remember(gen, label, oh)
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrDuplicateKey) {
			return Key{}, err
		}
		return Key{}, wrap("FindKey", err)
	}
	return k, nil
}

func (s *Session) find(h p11.SessionHandle, label string) (p11.ObjectHandle, error) {
	ctx := s.m.ctx
	if err := ctx.FindObjectsInit(h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}); err != nil {
		return 0, err
	}
	objs, _, err := ctx.FindObjects(h, 2)
	if ferr := ctx.FindObjectsFinal(h); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("pkcs11.FindKey %q: %w", label, ErrKeyNotFound)
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("pkcs11.FindKey %q: %w", label, ErrDuplicateKey)
}

func (s *Session) readKey(h p11.SessionHandle, oh p11.ObjectHandle) (Key, error) {
	attrs, err := s.m.ctx.GetAttributeValue(h, oh, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_LABEL, nil),
		p11.NewAttribute(p11.CKA_ID, nil),
		p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
		p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		p11.NewAttribute(p11.CKA_ENCRYPT, nil),
		p11.NewAttribute(p11.CKA_DECRYPT, nil),
		p11.NewAttribute(p11.CKA_SIGN, nil),
		p11.NewAttribute(p11.CKA_VERIFY, nil),
		p11.NewAttribute(p11.CKA_WRAP, nil),
		p11.NewAttribute(p11.CKA_UNWRAP, nil),
		p11.NewAttribute(p11.CKA_TOKEN, nil),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
	})
	if err != nil {
		return Key{}, err
	}
	var k Key
	for _, a := range attrs {
		switch a.Type {
		case p11.CKA_LABEL:
			k.Label = strings.TrimRight(string(a.Value), "\x00")
		case p11.CKA_ID:
			k.ID = append([]byte(nil), a.Value...)
		case p11.CKA_KEY_TYPE:
			k.KeyType = ulong(a.Value)
		case p11.CKA_VALUE_LEN:
			k.Bits = int(ulong(a.Value)) * 8
		case p11.CKA_ENCRYPT:
			k.Usage.Encrypt = boolean(a.Value)
		case p11.CKA_DECRYPT:
			k.Usage.Decrypt = boolean(a.Value)
		case p11.CKA_SIGN:
			k.Usage.Sign = boolean(a.Value)
		case p11.CKA_VERIFY:
			k.Usage.Verify = boolean(a.Value)
		case p11.CKA_WRAP:
			k.Usage.Wrap = boolean(a.Value)
		case p11.CKA_UNWRAP:
			k.Usage.Unwrap = boolean(a.Value)
		case p11.CKA_TOKEN:
			k.Persistent = boolean(a.Value)
		case p11.CKA_EXTRACTABLE:
			k.Extractable = boolean(a.Value)
		}
	}
	return k, nil
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return 0
}

func boolean(b []byte) bool { return len(b) > 0 && b[0] != 0 }

func (s *Session) remember(gen uint64, label string, oh p11.ObjectHandle) {
	s.mu.Lock()
	if s.gen == gen {
		s.handles[label] = oh
	}
	s.mu.Unlock()
}

func (s *Session) forget(label string) {
	s.mu.Lock()
	delete(s.handles, label)
	s.mu.Unlock()
}

// resolve returns a handle for k valid in generation gen.
func (s *Session) resolve(h p11.SessionHandle, gen uint64, k Key) (p11.ObjectHandle, error) {
	if k.gen == gen && k.handle != 0 {
		return k.handle, nil
	}
	s.mu.Lock()
	oh, ok := s.handles[k.Label]
	if s.gen != gen {
		ok = false
	}
	s.mu.Unlock()
	if ok {
		return oh, nil
	}
	oh, err := s.find(h, k.Label)
	if err != nil {
		return 0, err
	}
	s.remember(gen, k.Label, oh)
	return oh, nil
}

// withKey runs fn with k's handle, re-finding the key once if the handle
// turned out to be stale.
func (s *Session) withKey(op string, k Key, fn func(h p11.SessionHandle, oh p11.ObjectHandle) error) error {
	return s.do(op, func(h p11.SessionHandle, gen uint64) error {
		oh, err := s.resolve(h, gen, k)
		if err != nil {
			return err
		}
		err = fn(h, oh)
		if !hasCode(err, p11.CKR_OBJECT_HANDLE_INVALID, p11.CKR_KEY_HANDLE_INVALID) {
			return err
		}
		s.forget(k.Label)
		if oh, err = s.find(h, k.Label); err != nil {
			return err
		}
		s.remember(gen, k.Label, oh)
		return fn(h, oh)
	})
}

func checkIV(iv []byte) error {
	if len(iv) != 12 && len(iv) != 16 {
		return ErrInvalidIV
	}
	return nil
}

// EncryptGCM encrypts plaintext with k under AES-GCM with a 128-bit tag and
// returns ciphertext||tag and the IV actually used (an HSM may write its
// own). iv must be 12 or 16 bytes (ErrInvalidIV otherwise: an empty IV would
// let some libraries reuse a fixed nonce). A key without CKA_ENCRYPT gives
// ErrKeyFunctionNotAllowed.
func (s *Session) EncryptGCM(k Key, iv, aad, plaintext []byte) (ciphertextWithTag, ivUsed []byte, err error) {
	if err := checkIV(iv); err != nil {
		return nil, nil, fmt.Errorf("pkcs11.EncryptGCM: %w", err)
	}
	err = s.withKey("EncryptGCM", k, func(h p11.SessionHandle, oh p11.ObjectHandle) error {
		params := p11.NewGCMParams(iv, aad, 128)
		defer params.Free()
		mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}
		if err := s.m.ctx.EncryptInit(h, mech, oh); err != nil {
			return err
		}
		out, err := s.m.ctx.Encrypt(h, plaintext)
		if err != nil {
			return err
		}
		ciphertextWithTag, ivUsed = out, params.IV()
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, nil, err
		}
		return nil, nil, wrap("EncryptGCM", err)
	}
	if len(ivUsed) == 0 {
		ivUsed = append([]byte(nil), iv...)
	}
	return ciphertextWithTag, ivUsed, nil
}

// DecryptGCM reverses EncryptGCM. A wrong key, IV, AAD, tag or ciphertext
// gives an error wrapping ErrDecrypt; a key without CKA_DECRYPT gives
// ErrKeyFunctionNotAllowed.
func (s *Session) DecryptGCM(k Key, iv, aad, ciphertextWithTag []byte) ([]byte, error) {
	if err := checkIV(iv); err != nil {
		return nil, fmt.Errorf("pkcs11.DecryptGCM: %w", err)
	}
	if len(ciphertextWithTag) < 16 {
		return nil, fmt.Errorf("pkcs11.DecryptGCM: %w", ErrDecrypt)
	}
	var pt []byte
	err := s.withKey("DecryptGCM", k, func(h p11.SessionHandle, oh p11.ObjectHandle) error {
		params := p11.NewGCMParams(iv, aad, 128)
		defer params.Free()
		mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}
		if err := s.m.ctx.DecryptInit(h, mech, oh); err != nil {
			return err
		}
		out, err := s.m.ctx.Decrypt(h, ciphertextWithTag)
		if err != nil {
			return err
		}
		pt = out
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, err
		}
		if c, ok := Code(err); ok && decryptErrors[c] {
			return nil, fmt.Errorf("pkcs11.DecryptGCM: %w (%w)", ErrDecrypt, err)
		}
		return nil, wrap("DecryptGCM", err)
	}
	return pt, nil
}

// DestroyKey deletes k from the token.
func (s *Session) DestroyKey(k Key) error {
	err := s.withKey("DestroyKey", k, func(h p11.SessionHandle, oh p11.ObjectHandle) error {
		return s.m.ctx.DestroyObject(h, oh)
	})
	s.forget(k.Label)
	if errors.Is(err, ErrKeyNotFound) {
		return err
	}
	return wrap("DestroyKey", err)
}
