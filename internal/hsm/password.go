package hsm

import (
	"crypto/rand"
	"crypto/subtle"
	"regexp"
)

// Password is a crypto user's or crypto officer's password. It never prints.
type Password string

func (Password) String() string   { return "[REDACTED]" }
func (Password) GoString() string { return "[REDACTED]" }

// Equal compares in constant time.
func (p Password) Equal(q Password) bool {
	return subtle.ConstantTimeCompare([]byte(p), []byte(q)) == 1
}

var (
	// CloudHSM passwords are 7 to 32 characters; KMS requires kmsuser's
	// to be alphanumeric, and keyhold requires that of every CU.
	cuPasswordRe = regexp.MustCompile(`^[A-Za-z0-9]{7,32}$`)
	// Crypto officer passwords: 7 to 32 printable ASCII characters, no spaces.
	coPasswordRe = regexp.MustCompile(`^[\x21-\x7e]{7,32}$`)
	// CloudHSM user names: up to 31 letters, digits and underscores.
	usernameRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,31}$`)
)

func checkCUPassword(p Password) error {
	if !cuPasswordRe.MatchString(string(p)) {
		return invalid("The crypto user password must be 7 to 32 letters and digits.")
	}
	return nil
}

func checkCOPassword(p Password) error {
	if !coPasswordRe.MatchString(string(p)) {
		return invalid("The crypto officer password must be 7 to 32 printable characters without spaces.")
	}
	return nil
}

func checkUsername(u string) error {
	if !usernameRe.MatchString(u) {
		return invalid("The user name must be 1 to 31 letters, digits or underscores.")
	}
	return nil
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomPassword returns n random alphanumeric characters (rejection sampled,
// so every character is equally likely).
func randomPassword(n int) Password {
	out := make([]byte, 0, n)
	var b [64]byte
	for len(out) < n {
		if _, err := rand.Read(b[:]); err != nil {
			panic("hsm: crypto/rand failed: " + err.Error())
		}
		for _, c := range b {
			if int(c) < 256-256%len(alnum) && len(out) < n {
				out = append(out, alnum[int(c)%len(alnum)])
			}
		}
	}
	return Password(out)
}
