package hsm

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567" // lowercase RFC 4648 base32

// newID returns prefix + "-" + 11 random characters of [a-z2-7], the shape
// of CloudHSM's cluster-, hsm- and backup- identifiers.
func newID(prefix string) string {
	var b [11]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hsm: crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = idAlphabet[b[i]&31]
	}
	return prefix + "-" + string(b[:])
}

var (
	clusterIDRe = regexp.MustCompile(`^cluster-[2-7a-zA-Z]{11,16}$`)
	hsmIDRe     = regexp.MustCompile(`^hsm-[2-7a-zA-Z]{11,16}$`)
	backupIDRe  = regexp.MustCompile(`^backup-[2-7a-zA-Z]{11,16}$`)
)

// ValidClusterID, ValidHSMID and ValidBackupID check identifier shapes.
func ValidClusterID(s string) bool { return clusterIDRe.MatchString(s) }
func ValidHSMID(s string) bool     { return hsmIDRe.MatchString(s) }
func ValidBackupID(s string) bool  { return backupIDRe.MatchString(s) }

// hexID derives a stable n-hex-digit identifier from parts (VPC, subnet,
// security group and ENI identifiers of the modelled network).
func hexID(n int, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:n]
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic("hsm: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)[:n]
}
