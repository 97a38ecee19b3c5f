//go:build cgo

package pkcs11

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"sync"

	p11 "github.com/miekg/pkcs11"
)

// modules is the process-wide cache of initialised libraries. It is the one
// piece of global state here, and it has to be: Cryptoki allows C_Initialize
// once per process, so two independent Opens of one library must share it.
var (
	modulesMu sync.Mutex
	modules   = map[string]*Module{}
)

// Module is one initialised PKCS#11 library. It is safe for concurrent use.
type Module struct {
	path string
	ctx  *p11.Ctx

	mu     sync.Mutex // guards refs and logins
	refs   int
	logins map[uint]*login // by slot: Cryptoki login state is per application and token
}

// login is the shared login state of one token in this process.
type login struct {
	user    UserType
	pinHash [32]byte
	refs    int
	active  bool // false after a Logout until someone logs in again
}

// Open loads and initialises the library at path, or returns the Module
// already open for that path (incrementing its reference count). Every Open
// must be paired with a Close. For SoftHSM2, SOFTHSM2_CONF must be set before
// the first Open in the process; later changes to it have no effect until
// every Module for that path is closed.
func Open(path string) (*Module, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m, ok := modules[path]; ok {
		m.mu.Lock()
		m.refs++
		m.mu.Unlock()
		return m, nil
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("pkcs11.Open %q: %w", path, ErrModule)
	}
	if err := ctx.Initialize(); err != nil && !hasCode(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, wrap("Open", err)
	}
	m := &Module{path: path, ctx: ctx, refs: 1, logins: map[uint]*login{}}
	modules[path] = m
	return m, nil
}

// Path is the library path the module was opened with.
func (m *Module) Path() string { return m.path }

// Close drops one reference. The last Close finalises and unloads the
// library; Sessions must be closed before that.
func (m *Module) Close() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.mu.Lock()
	m.refs--
	last := m.refs == 0
	m.mu.Unlock()
	if !last {
		return nil
	}
	delete(modules, m.path)
	err := m.ctx.Finalize()
	m.ctx.Destroy()
	return wrap("Close", err)
}

// TokenInfo describes a token in a slot.
type TokenInfo struct {
	Slot            uint
	Label           string
	Model           string
	ManufacturerID  string
	SerialNumber    string
	Initialized     bool
	UserPINSet      bool
	FirmwareVersion string
}

// Tokens lists the tokens present, including uninitialised ones.
func (m *Module) Tokens() ([]TokenInfo, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, wrap("Tokens", err)
	}
	out := make([]TokenInfo, 0, len(slots))
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			return nil, wrap("Tokens", err)
		}
		out = append(out, TokenInfo{
			Slot:            s,
			Label:           strings.TrimRight(ti.Label, " \x00"),
			Model:           strings.TrimRight(ti.Model, " \x00"),
			ManufacturerID:  strings.TrimRight(ti.ManufacturerID, " \x00"),
			SerialNumber:    strings.TrimRight(ti.SerialNumber, " \x00"),
			Initialized:     ti.Flags&p11.CKF_TOKEN_INITIALIZED != 0,
			UserPINSet:      ti.Flags&p11.CKF_USER_PIN_INITIALIZED != 0,
			FirmwareVersion: fmt.Sprintf("%d.%d", ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor),
		})
	}
	return out, nil
}

// FindToken returns the slot of the initialised token with this label, or an
// error wrapping ErrTokenNotFound.
func (m *Module) FindToken(label string) (uint, error) {
	ts, err := m.Tokens()
	if err != nil {
		return 0, err
	}
	for _, t := range ts {
		if t.Initialized && t.Label == label {
			return t.Slot, nil
		}
	}
	return 0, fmt.Errorf("pkcs11.FindToken %q: %w", label, ErrTokenNotFound)
}

// FreeSlot returns a slot holding an uninitialised token (SoftHSM2 always
// offers one), or ErrTokenNotFound.
func (m *Module) FreeSlot() (uint, error) {
	ts, err := m.Tokens()
	if err != nil {
		return 0, err
	}
	for _, t := range ts {
		if !t.Initialized {
			return t.Slot, nil
		}
	}
	return 0, fmt.Errorf("pkcs11.FreeSlot: %w", ErrTokenNotFound)
}

// InitToken initialises (or re-initialises, erasing it) the token in slot
// with a security officer PIN and a label. The user PIN is then set with an
// SO Session's InitPIN. After InitToken the token may be reported under a
// different slot ID: find it again with FindToken.
func (m *Module) InitToken(slot uint, soPIN, label string) error {
	return wrap("InitToken", m.ctx.InitToken(slot, soPIN, label))
}

// acquireLogin records that a Session for slot wants to be logged in as user
// with pin, and reports whether it must call C_Login itself. A second Session
// as the same user shares the login only if it presents the same PIN.
func (m *Module) acquireLogin(slot uint, user UserType, pin string) (needLogin bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := sha256.Sum256([]byte(pin))
	if l, ok := m.logins[slot]; ok {
		if l.user != user {
			return false, fmt.Errorf("pkcs11.OpenSession: %w", ErrAnotherUserLoggedIn)
		}
		if subtle.ConstantTimeCompare(l.pinHash[:], h[:]) != 1 {
			return false, fmt.Errorf("pkcs11.OpenSession: %w", ErrPINIncorrect)
		}
		l.refs++
		return false, nil
	}
	m.logins[slot] = &login{user: user, pinHash: h, refs: 1, active: true}
	return true, nil
}

// loginActive reports whether the token in slot is logged in as far as this
// process knows.
func (m *Module) loginActive(slot uint) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logins[slot]
	return ok && l.active
}

func (m *Module) setLoginActive(slot uint, active bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.logins[slot]; ok {
		l.active = active
	}
}

// releaseLogin drops a Session's share of a login and reports whether it was
// the last one (so the caller should log out).
func (m *Module) releaseLogin(slot uint) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logins[slot]
	if !ok {
		return false
	}
	l.refs--
	if l.refs > 0 {
		return false
	}
	delete(m.logins, slot)
	return true
}

// updateLoginPIN records a PIN change made through SetPIN.
func (m *Module) updateLoginPIN(slot uint, pin string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.logins[slot]; ok {
		l.pinHash = sha256.Sum256([]byte(pin))
	}
}

// samePIN reports whether pin is the one the current login of slot used.
func (m *Module) samePIN(slot uint, pin string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logins[slot]
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(pin))
	return subtle.ConstantTimeCompare(l.pinHash[:], h[:]) == 1
}
