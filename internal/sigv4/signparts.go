package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// Header is one request header for SignParts: its name in lower case and
// its value as sent.
type Header struct{ Name, Value string }

// SignParts signs a request that the caller writes itself (no
// http.Request): method, host as the Host header sends it (with the port as
// written there), the escaped path (no query string), the other headers to
// sign besides host and x-amz-date, and the full body. It returns the
// X-Amz-Date and Authorization values to send; the signature is the one
// Sign makes for the same request. It does not support a SessionToken.
func (s *Signer) SignParts(method, host, escapedPath string, headers []Header, body []byte) (amzDate, authorization string, err error) {
	if s.AccessKeyID == "" || s.SecretAccessKey == "" {
		return "", "", errors.New("sigv4: Signer needs an access key id and a secret access key")
	}
	if s.Region == "" || s.Service == "" {
		return "", "", errors.New("sigv4: Signer needs a region and a service")
	}
	if s.SessionToken != "" {
		return "", "", errors.New("sigv4: SignParts does not send a session token")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var dateBuf [len(timeFormat)]byte
	amzDate = string(now().UTC().AppendFormat(dateBuf[:0], timeFormat))
	date := amzDate[:8]

	var hsBuf [8]Header
	hs := append(hsBuf[:0], Header{"host", host}, Header{"x-amz-date", amzDate})
	for _, h := range headers {
		if h.Name == "host" || h.Name == "x-amz-date" || h.Name == "authorization" {
			return "", "", errors.New("sigv4: SignParts signs host and x-amz-date itself")
		}
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })

	c := make([]byte, 0, 512)
	c = append(c, method...)
	c = append(c, '\n')
	c = append(c, canonicalURI(escapedPath)...)
	c = append(c, "\n\n"...)
	for _, h := range hs {
		c = append(c, h.Name...)
		c = append(c, ':')
		c = append(c, trimValue(h.Value)...)
		c = append(c, '\n')
	}
	c = append(c, '\n')
	signedStart := len(c)
	for i, h := range hs {
		if i > 0 {
			c = append(c, ';')
		}
		c = append(c, h.Name...)
	}
	signed := string(c[signedStart:])
	c = append(c, '\n')
	sum := sha256.Sum256(body)
	c = hex.AppendEncode(c, sum[:])

	scope := date + "/" + s.Region + "/" + s.Service + "/" + terminator
	sts := appendHashedStringToSign(c[:0], amzDate, scope, c)
	m := hmac.New(sha256.New, s.key(date))
	m.Write(sts)
	var sig [sha256.Size]byte

	a := make([]byte, 0, len(algorithm)+len(s.AccessKeyID)+len(scope)+len(signed)+128)
	a = append(a, algorithm...)
	a = append(a, " Credential="...)
	a = append(a, s.AccessKeyID...)
	a = append(a, '/')
	a = append(a, scope...)
	a = append(a, ", SignedHeaders="...)
	a = append(a, signed...)
	a = append(a, ", Signature="...)
	a = hex.AppendEncode(a, m.Sum(sig[:0]))
	return amzDate, string(a), nil
}
