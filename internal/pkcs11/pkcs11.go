//go:build cgo

// Package pkcs11 is keyhold's narrow wrapper over a PKCS#11 library
// (github.com/miekg/pkcs11): open a module once per process, find or
// initialise a token, log in once, and run AES-256-GCM with non-extractable
// token keys through a pool of sessions.
//
// It exists so that the rest of keyhold depends on a handful of documented
// contracts instead of raw Cryptoki, and so that the Cryptoki pitfalls are
// handled in one place:
//
//   - C_Initialize runs once per process and module path. Open caches the
//     initialised module by path and reference-counts it; a library such as
//     SoftHSM2 reads its configuration (SOFTHSM2_CONF) only then, so one
//     process sees one token directory.
//   - Login state belongs to the application, not to a session. A Session logs
//     in once, keeps one anchor PKCS#11 session open for as long as it lives
//     (closing the last session logs the token out) and pools further
//     sessions, one per concurrent caller.
//   - Object handles do not survive a logout. Keys are remembered by label and
//     re-found after a re-login.
//   - AES-GCM needs a caller-supplied IV: some libraries silently use a zero
//     IV when none is given, so EncryptGCM refuses an empty IV, and it reads
//     the IV back for HSMs that write their own.
//   - A failed GCM tag check surfaces as CKR_GENERAL_ERROR on SoftHSM2; in
//     DecryptGCM that and the other "bad ciphertext" codes become ErrDecrypt.
//
// This package must never log, print or put into an error a PIN or key
// material, and it never creates extractable keys.
package pkcs11

import (
	"errors"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// Errors returned by this package. Each wraps the underlying Cryptoki return
// value as well, so errors.As(err, &p11.Error) still works for callers that
// need the raw code (see Code).
var (
	ErrModule                 = errors.New("pkcs11: module cannot be loaded")
	ErrTokenNotFound          = errors.New("pkcs11: token not found")
	ErrPINIncorrect           = errors.New("pkcs11: PIN incorrect")
	ErrPINLocked              = errors.New("pkcs11: PIN locked")
	ErrPINInvalid             = errors.New("pkcs11: PIN invalid")
	ErrUserNotLoggedIn        = errors.New("pkcs11: user not logged in")
	ErrUserAlreadyLoggedIn    = errors.New("pkcs11: user already logged in")
	ErrAnotherUserLoggedIn    = errors.New("pkcs11: another user already logged in")
	ErrUserPINNotInitialized  = errors.New("pkcs11: user PIN not initialized")
	ErrKeyNotFound            = errors.New("pkcs11: key not found")
	ErrDuplicateKey           = errors.New("pkcs11: more than one key has this label")
	ErrKeyFunctionNotAllowed  = errors.New("pkcs11: key does not permit this operation")
	ErrDecrypt                = errors.New("pkcs11: ciphertext, IV, AAD or tag invalid")
	ErrInvalidIV              = errors.New("pkcs11: IV must be 12 or 16 bytes")
	ErrSessionClosed          = errors.New("pkcs11: session closed")
	ErrTokenNotInitialized    = errors.New("pkcs11: token not initialized")
	ErrDevice                 = errors.New("pkcs11: device error")
	ErrUnsupportedMechanism   = errors.New("pkcs11: mechanism not supported")
	ErrCryptokiNotInitialized = errors.New("pkcs11: library not initialized")
)

// codeErrors maps Cryptoki return values to this package's errors. Codes not
// listed are returned wrapped but without a sentinel.
var codeErrors = map[uint]error{
	p11.CKR_PIN_INCORRECT:                  ErrPINIncorrect,
	p11.CKR_PIN_LOCKED:                     ErrPINLocked,
	p11.CKR_PIN_INVALID:                    ErrPINInvalid,
	p11.CKR_PIN_LEN_RANGE:                  ErrPINInvalid,
	p11.CKR_USER_NOT_LOGGED_IN:             ErrUserNotLoggedIn,
	p11.CKR_USER_ALREADY_LOGGED_IN:         ErrUserAlreadyLoggedIn,
	p11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN: ErrAnotherUserLoggedIn,
	p11.CKR_USER_PIN_NOT_INITIALIZED:       ErrUserPINNotInitialized,
	p11.CKR_KEY_FUNCTION_NOT_PERMITTED:     ErrKeyFunctionNotAllowed,
	p11.CKR_TOKEN_NOT_RECOGNIZED:           ErrTokenNotInitialized,
	p11.CKR_DEVICE_ERROR:                   ErrDevice,
	p11.CKR_DEVICE_REMOVED:                 ErrDevice,
	p11.CKR_TOKEN_NOT_PRESENT:              ErrDevice,
	p11.CKR_MECHANISM_INVALID:              ErrUnsupportedMechanism,
	p11.CKR_CRYPTOKI_NOT_INITIALIZED:       ErrCryptokiNotInitialized,
}

// decryptErrors are the codes that, from C_Decrypt with CKM_AES_GCM, mean the
// input was not produced by this key with this IV and AAD. SoftHSM2 reports a
// tag mismatch as CKR_GENERAL_ERROR, nShield as CKR_FUNCTION_FAILED.
var decryptErrors = map[uint]bool{
	p11.CKR_GENERAL_ERROR:            true,
	p11.CKR_FUNCTION_FAILED:          true,
	p11.CKR_ENCRYPTED_DATA_INVALID:   true,
	p11.CKR_ENCRYPTED_DATA_LEN_RANGE: true,
	p11.CKR_DATA_LEN_RANGE:           true,
	p11.CKR_MECHANISM_PARAM_INVALID:  true,
}

// wrap turns a Cryptoki error into "pkcs11.<op>: <sentinel>: <raw code>".
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce p11.Error
	if errors.As(err, &ce) {
		if s, ok := codeErrors[uint(ce)]; ok {
			return fmt.Errorf("pkcs11.%s: %w (%w)", op, s, ce)
		}
	}
	return fmt.Errorf("pkcs11.%s: %w", op, err)
}

// Code reports the raw Cryptoki return value carried by err, if any.
func Code(err error) (uint, bool) {
	var ce p11.Error
	if errors.As(err, &ce) {
		return uint(ce), true
	}
	return 0, false
}

func hasCode(err error, codes ...uint) bool {
	c, ok := Code(err)
	if !ok {
		return false
	}
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// UserType says who a Session logs in as.
type UserType uint

const (
	// User is the normal user (CKU_USER): kmsuser for a CloudHSM key store,
	// the XKS proxy's crypto user.
	User UserType = p11.CKU_USER
	// SO is the security officer (CKU_SO), the crypto officer of a cluster.
	SO UserType = p11.CKU_SO
)

func (u UserType) String() string {
	switch u {
	case User:
		return "user"
	case SO:
		return "so"
	}
	return fmt.Sprintf("usertype(%d)", uint(u))
}

// secret holds a PIN in memory. It never prints.
type secret string

func (secret) String() string   { return "[REDACTED]" }
func (secret) GoString() string { return "[REDACTED]" }
