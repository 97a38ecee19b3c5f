package hsm

import (
	"errors"
	"fmt"
)

// Error kinds. Compare with errors.Is; messages of *Error values are safe to
// show to a client.
var (
	ErrClusterNotFound    = errors.New("hsm: cluster not found")
	ErrHSMNotFound        = errors.New("hsm: HSM not found")
	ErrBackupNotFound     = errors.New("hsm: backup not found")
	ErrInvalidRequest     = errors.New("hsm: invalid request")
	ErrResourceLimit      = errors.New("hsm: resource limit exceeded")
	ErrTag                = errors.New("hsm: invalid tag request")
	ErrNoActiveHSM        = errors.New("hsm: cluster has no active HSM")
	ErrUserNotFound       = errors.New("hsm: crypto user not found")
	ErrUserExists         = errors.New("hsm: crypto user already exists")
	ErrInvalidCredentials = errors.New("hsm: invalid credentials")
	ErrUserLockedOut      = errors.New("hsm: crypto user locked out")
	ErrUserLoggedIn       = errors.New("hsm: crypto user logged in elsewhere")
	ErrNetwork            = errors.New("hsm: cannot reach the HSM")
	ErrKeyNotFound        = errors.New("hsm: key not found")
	ErrKeyExists          = errors.New("hsm: a key with this label exists")
	ErrDecrypt            = errors.New("hsm: ciphertext, IV, AAD or tag invalid")
	ErrSessionClosed      = errors.New("hsm: session logged out")
)

// Error is a domain error with a message safe for the client.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error { return errf(ErrInvalidRequest, format, args...) }

func clusterNotFound(id string) error {
	return errf(ErrClusterNotFound, "Cluster %s not found.", id)
}

func backupNotFound(id string) error {
	return errf(ErrBackupNotFound, "Backup %s not found.", id)
}
