package sigv4

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Signer signs requests the way the AWS SDKs do. It is safe for concurrent
// use once its fields are set, and it caches the derived signing key per
// (date, region, service) so that signing costs one HMAC.
//
// Printing a Signer (%v, %+v, %#v) never shows the secret access key or the
// session token.
type Signer struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Region, Service                            string
	Now                                        func() time.Time // nil = time.Now

	cache atomic.Value // *signerKey; no lock, so a Signer may be copied before use
}

type signerKey struct {
	secret, date, region, service string
	key                           []byte
}

// String redacts the secrets.
func (s Signer) String() string {
	return fmt.Sprintf("sigv4.Signer{AccessKeyID:%q SecretAccessKey:REDACTED SessionToken:%s Region:%q Service:%q}",
		s.AccessKeyID, redacted(s.SessionToken), s.Region, s.Service)
}

// GoString redacts the secrets for %#v.
func (s Signer) GoString() string { return s.String() }

// Format makes every verb print the redacted form, including on a Signer
// value embedded in another struct.
func (s Signer) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }

func redacted(v string) string {
	if v == "" {
		return `""`
	}
	return "REDACTED"
}

// Sign sets X-Amz-Date (and X-Amz-Security-Token when SessionToken is set,
// and X-Amz-Content-Sha256 when the caller already set that header), then
// Authorization. It signs host plus every header present on r (lower-cased,
// sorted), except Authorization itself. Host is r.Host, or r.URL.Host when
// r.Host is empty, with the port as written there. body is the full request
// body; r.Body is not read.
func (s *Signer) Sign(r *http.Request, body []byte) error {
	if s.AccessKeyID == "" || s.SecretAccessKey == "" {
		return errors.New("sigv4: Signer needs an access key id and a secret access key")
	}
	if s.Region == "" || s.Service == "" {
		return errors.New("sigv4: Signer needs a region and a service")
	}
	if r.URL == nil {
		return errors.New("sigv4: request has no URL")
	}
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().UTC()
	amzDate := t.Format(timeFormat)
	date := amzDate[:8]

	r.Header.Del("Authorization")
	r.Header.Set("X-Amz-Date", amzDate)
	if s.SessionToken != "" {
		r.Header.Set("X-Amz-Security-Token", s.SessionToken)
	}
	payloadHash := ""
	if declared, ok := r.Header["X-Amz-Content-Sha256"]; ok && len(declared) > 0 && declared[0] == UnsignedPayload {
		payloadHash = UnsignedPayload
	} else {
		payloadHash = hashHex(body)
		if ok {
			r.Header.Set("X-Amz-Content-Sha256", payloadHash)
		}
	}

	signed := make([]string, 0, len(r.Header)+1)
	signed = append(signed, "host")
	for k := range r.Header {
		lk := strings.ToLower(k)
		if lk == "authorization" || lk == "host" || contains(signed, lk) {
			continue
		}
		signed = append(signed, lk)
	}
	sort.Strings(signed)

	scope := date + "/" + s.Region + "/" + s.Service + "/" + terminator
	sts := stringToSign(r, canonicalURI(r.URL.EscapedPath()), canonicalQuery(r.URL.RawQuery, ""), signed, payloadHash, amzDate, scope)
	sig := hex.EncodeToString(hmacSHA256(s.key(date), sts))

	r.Header.Set("Authorization", algorithm+" Credential="+s.AccessKeyID+"/"+scope+
		", SignedHeaders="+strings.Join(signed, ";")+", Signature="+sig)
	return nil
}

func (s *Signer) key(date string) []byte {
	if k, _ := s.cache.Load().(*signerKey); k != nil &&
		k.date == date && k.region == s.Region && k.service == s.Service &&
		hmac.Equal([]byte(k.secret), []byte(s.SecretAccessKey)) {
		return k.key
	}
	k := &signerKey{
		secret: s.SecretAccessKey, date: date, region: s.Region, service: s.Service,
		key: deriveKey(s.SecretAccessKey, date, s.Region, s.Service),
	}
	s.cache.Store(k)
	return k.key
}
