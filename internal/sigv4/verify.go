package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Lookup returns the secret access key for an access key id. It returns an
// error wrapping ErrUnknownAccessKey if the key does not exist; any other
// error is treated as internal and returned to Verify's caller unchanged
// (wrapped), never as a client-facing message.
type Lookup func(ctx context.Context, accessKeyID string) (secret string, err error)

// Verifier checks SigV4 signatures. The zero value is unusable (Lookup is
// required); a Verifier is safe for concurrent use once its fields are set.
type Verifier struct {
	Lookup  Lookup
	Now     func() time.Time // nil = time.Now
	MaxSkew time.Duration    // 0 = 5 minutes
	// ContentTypeUnsigned accepts a Content-Type the signature does not
	// cover. AWS's own APIs (KMS, CloudHSM, IAM, STS) require it signed; the
	// XKS proxy API signs only host and x-amz-date, and AWS KMS, its client,
	// sends Content-Type outside the signature.
	ContentTypeUnsigned bool

	// keys holds a map[keyCacheID]keyCacheEntry of derived keys that verified
	// a request, replaced copy-on-write; no lock, so a Verifier may be copied
	// before use.
	keys atomic.Value
}

// Scope is what the server expects in the credential scope. Region "" accepts
// any region Regions accepts (any at all when Regions is nil); Service ""
// accepts any service.
type Scope struct {
	Region, Service string
	Regions         func(region string) bool
}

// Result describes a verified request.
type Result struct {
	AccessKeyID     string
	SessionToken    string // X-Amz-Security-Token if present (signed or not; the caller checks it)
	Region, Service string
	SignedHeaders   []string
	Time            time.Time
}

type keyCacheID struct{ accessKeyID, date, region, service string }

type keyCacheEntry struct {
	secretSum [32]byte // which secret the key was derived from (rotation)
	key       []byte
	// macs holds HMAC-SHA256 states keyed with key, reset after each use:
	// a request's signature then costs neither hmac.New's allocations nor
	// hashing the key's pads again.
	macs *sync.Pool
}

func newMACPool(key []byte) *sync.Pool {
	return &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
}

// maxKeyCache bounds the derived-key cache; it is emptied when full.
const maxKeyCache = 1024

// maxAuthLen bounds the Authorization header we are willing to parse.
const maxAuthLen = 8 << 10

// authFields is a parsed Authorization header (or its query-string form).
type authFields struct {
	accessKeyID, date, region, service, term string
	signedHeaders                            []string
	signature                                string
	sig                                      [sha256.Size]byte // signature, decoded
	query                                    bool              // query-string authentication
}

// parseAuthorization parses "AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request,
// SignedHeaders=a;b, Signature=hex". Errors wrap ErrIncomplete.
func parseAuthorization(h string) (authFields, error) {
	var a authFields
	if len(h) > maxAuthLen {
		return a, fail(ErrIncomplete, "Authorization header is too long.")
	}
	alg, rest, _ := strings.Cut(strings.TrimLeft(h, " "), " ")
	if alg != algorithm {
		return a, fail(ErrIncomplete, "Authorization header requires the AWS4-HMAC-SHA256 algorithm.")
	}
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for more := true; more; {
		var part string
		part, rest, more = strings.Cut(rest, ",")
		part = strings.Trim(part, " \t")
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return a, fail(ErrIncomplete, fmt.Sprintf("Authorization header has a malformed parameter %q.", clip(k)))
		}
		switch k {
		case "Credential":
			if haveCred {
				return a, fail(ErrIncomplete, "Authorization header has a duplicate 'Credential' parameter.")
			}
			cred, haveCred = v, true
		case "SignedHeaders":
			if haveSigned {
				return a, fail(ErrIncomplete, "Authorization header has a duplicate 'SignedHeaders' parameter.")
			}
			signed, haveSigned = v, true
		case "Signature":
			if haveSig {
				return a, fail(ErrIncomplete, "Authorization header has a duplicate 'Signature' parameter.")
			}
			sig, haveSig = v, true
		}
	}
	var missing []string
	if !haveCred {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if !haveSig {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if !haveSigned {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if len(missing) > 0 {
		return a, fail(ErrIncomplete, strings.Join(missing, " "))
	}
	if err := a.fill(cred, signed, sig); err != nil {
		return a, err
	}
	return a, nil
}

// fill checks and stores the three parameters shared by header and query auth.
func (a *authFields) fill(cred, signed, sig string) error {
	var parts [5]string
	n := 0
	for rest, more := cred, true; more; n++ {
		if n == len(parts) {
			n++ // a sixth element
			break
		}
		parts[n], rest, more = strings.Cut(rest, "/")
	}
	if n != 5 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" || parts[4] == "" {
		return fail(ErrIncomplete, "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term.")
	}
	a.accessKeyID, a.date, a.region, a.service, a.term = parts[0], parts[1], parts[2], parts[3], parts[4]
	if len(a.accessKeyID) > 128 {
		return fail(ErrIncomplete, "Credential access key id is too long.")
	}
	if signed == "" {
		return fail(ErrIncomplete, "SignedHeaders must not be empty.")
	}
	a.signedHeaders = strings.Split(signed, ";")
	host := false
	for i, h := range a.signedHeaders {
		if h == "" || !validHeaderName(h) {
			return fail(ErrIncomplete, "SignedHeaders contains an invalid header name.")
		}
		h = strings.ToLower(h)
		// A handful of names: a scan beats a map.
		if contains(a.signedHeaders[:i], h) {
			return fail(ErrIncomplete, "SignedHeaders contains a duplicate header name.")
		}
		host = host || h == "host"
		a.signedHeaders[i] = h
	}
	if !host {
		return fail(ErrIncomplete, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	if len(sig) != 2*sha256.Size || !decodeHex(a.sig[:], sig) {
		return fail(ErrIncomplete, "Signature must be 64 hexadecimal characters.")
	}
	a.signature = strings.ToLower(sig)
	return nil
}

// decodeHex decodes len(dst)*2 hex digits of s (either case) into dst.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func validHeaderName(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == ';' || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// clip keeps client-supplied text short and printable inside messages.
func clip(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// parseQueryAuth reads the presigned-URL form (X-Amz-Algorithm=... in the query).
func parseQueryAuth(r *http.Request) (authFields, string, error) {
	q := r.URL.Query()
	var a authFields
	if q.Get("X-Amz-Algorithm") != algorithm {
		return a, "", fail(ErrIncomplete, "X-Amz-Algorithm must be AWS4-HMAC-SHA256.")
	}
	var missing []string
	for _, p := range []string{"X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date"} {
		if q.Get(p) == "" {
			missing = append(missing, fmt.Sprintf("AWS query-string parameters must include '%s'.", p))
		}
	}
	if len(missing) > 0 {
		return a, "", fail(ErrIncomplete, strings.Join(missing, " "))
	}
	if err := a.fill(q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature")); err != nil {
		return a, "", err
	}
	a.query = true
	return a, q.Get("X-Amz-Date"), nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return 5 * time.Minute
}

// Verify checks r's SigV4 signature (Authorization header, or the query-string
// form) against body, the full request body already read by the caller; r.Body
// is not touched. It is Begin then Finish. Rejections wrap exactly one of the
// sentinel errors; an error from Lookup other than ErrUnknownAccessKey is
// returned wrapped, and is internal (not for the client).
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte, want Scope) (Result, error) {
	p, err := v.Begin(ctx, r, want)
	if err != nil {
		return Result{}, err
	}
	return p.Finish(body)
}

// Pending is a request whose headers passed Begin and whose body is still to
// be read. It must not outlive the request.
type Pending struct {
	v       *Verifier
	r       *http.Request
	a       authFields
	t       time.Time // the request's date
	amzDate string
	scope   string
	key     []byte
	secret  string
	// secretSum is the SHA-256 of secret; cached says the key came from
	// the cache (nothing to remember), macs is its HMAC pool.
	secretSum [32]byte
	cached    bool
	macs      *sync.Pool
	declared  string // the signed X-Amz-Content-Sha256 (lower-case hex), "" when absent
	checked   bool   // the signature was verified over declared
}

// Begin checks everything a request's headers carry, before its body is read,
// so that a server need not buffer the body of a request that can never
// authenticate: the Authorization header (or query-string form), the date and
// clock skew, the credential scope, that every header AWS requires to be
// signed is signed (Host, X-Amz-Date or Date, Content-Type when present, and
// every X-Amz-* header, X-Amz-Target included), that the payload hash is not
// UNSIGNED-PAYLOAD, and that the access key exists. When the client signed an
// X-Amz-Content-Sha256 body hash, the signature itself is verified here too
// (SignatureChecked reports it) and Finish only compares the body with the
// hash. Errors are Verify's.
func (v *Verifier) Begin(ctx context.Context, r *http.Request, want Scope) (*Pending, error) {
	var (
		a       authFields
		amzDate string
		err     error
	)
	auths := r.Header.Values("Authorization")
	switch {
	case len(auths) > 1:
		return nil, fail(ErrIncomplete, "Request has more than one Authorization header.")
	case len(auths) == 1:
		if a, err = parseAuthorization(auths[0]); err != nil {
			return nil, err
		}
		amzDate = r.Header.Get("X-Amz-Date")
		if amzDate == "" {
			amzDate = r.Header.Get("Date")
		}
		if amzDate == "" {
			return nil, fail(ErrIncomplete, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
		}
	case r.URL != nil && r.URL.Query().Has("X-Amz-Algorithm"):
		if a, amzDate, err = parseQueryAuth(r); err != nil {
			return nil, err
		}
	default:
		return nil, fail(ErrMissingAuth, "")
	}

	t, err := parseAmzDate(amzDate)
	if err != nil {
		return nil, fail(ErrIncomplete, fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", clip(amzDate)))
	}
	amzDate = t.Format(timeFormat)

	if err := requireSigned(r, &a, !v.ContentTypeUnsigned); err != nil {
		return nil, err
	}

	// Scope checks, in the order AWS reports them.
	if a.date != amzDate[:8] {
		return nil, fail(ErrScope, fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", clip(a.date), amzDate[:8], amzDate))
	}
	if (want.Region != "" && a.region != want.Region) || (want.Region == "" && want.Regions != nil && !want.Regions(a.region)) {
		return nil, fail(ErrScope, "Credential should be scoped to a valid region.")
	}
	if want.Service != "" && a.service != want.Service {
		return nil, fail(ErrScope, fmt.Sprintf("Credential should be scoped to correct service: '%s'.", want.Service))
	}
	if a.term != terminator {
		return nil, fail(ErrScope, fmt.Sprintf("Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", clip(a.term)))
	}

	now := v.now().UTC()
	skew := v.maxSkew()
	if a.query {
		// Presigned: valid from X-Amz-Date (minus skew) for X-Amz-Expires seconds.
		exp, err := strconv.Atoi(r.URL.Query().Get("X-Amz-Expires"))
		if err != nil || exp <= 0 || exp > 7*24*3600 {
			return nil, fail(ErrIncomplete, "X-Amz-Expires must be a number of seconds between 1 and 604800.")
		}
		if now.After(t.Add(time.Duration(exp) * time.Second)) {
			return nil, fail(ErrExpired, "Request has expired")
		}
		if t.After(now.Add(skew)) {
			return nil, fail(ErrExpired, skewMessage(t, now, skew))
		}
	} else if t.Before(now.Add(-skew)) || t.After(now.Add(skew)) {
		return nil, fail(ErrExpired, skewMessage(t, now, skew))
	}

	// Payload hash. AWS honours UNSIGNED-PAYLOAD only on S3: every other
	// service hashes the body it received, so a request signed over the
	// literal string never matches. Refusing it here, before the body is
	// read, gives the same answer.
	p := &Pending{v: v, r: r, a: a, t: t, amzDate: amzDate}
	if declared := r.Header.Get("X-Amz-Content-Sha256"); declared != "" {
		if _, err := hex.DecodeString(declared); err != nil || len(declared) != 2*sha256.Size {
			return nil, fail(ErrSignature, "")
		}
		p.declared = strings.ToLower(declared)
	}

	secret, err := v.Lookup(ctx, a.accessKeyID)
	if err != nil {
		if errors.Is(err, ErrUnknownAccessKey) {
			return nil, fail(ErrUnknownAccessKey, "")
		}
		return nil, fmt.Errorf("sigv4: looking up access key: %w", err)
	}
	p.secret = secret
	p.secretSum = sha256.Sum256([]byte(secret))
	if e, ok := v.cachedKey(a.accessKeyID, a.date, a.region, a.service, &p.secretSum); ok {
		p.key, p.macs, p.cached = e.key, e.macs, true
	} else {
		p.key = deriveKey(secret, a.date, a.region, a.service)
	}
	p.scope = a.date + "/" + a.region + "/" + a.service + "/" + terminator
	if p.declared != "" {
		if !p.signatureMatches(p.declared) {
			return nil, fail(ErrSignature, "")
		}
		p.checked = true
	}
	return p, nil
}

// SignatureChecked reports whether Begin already verified the signature (over
// a signed X-Amz-Content-Sha256): the request is then authentic, and Finish
// only checks that the body is the one that was signed.
func (p *Pending) SignatureChecked() bool { return p.checked }

// Finish completes the verification with the request body.
func (p *Pending) Finish(body []byte) (Result, error) {
	sum := sha256.Sum256(body)
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum[:])
	if p.declared != "" {
		if !hmac.Equal([]byte(p.declared), got[:]) {
			return Result{}, fail(ErrSignature, "The provided 'x-amz-content-sha256' header does not match what was computed.")
		}
	} else if !p.signatureMatches(string(got[:])) {
		return Result{}, fail(ErrSignature, "")
	}
	a := &p.a
	if !p.cached {
		p.v.remember(a.accessKeyID, &p.secretSum, a.date, a.region, a.service, p.key)
	}
	r := p.r
	res := Result{
		AccessKeyID:   a.accessKeyID,
		SessionToken:  r.Header.Get("X-Amz-Security-Token"),
		Region:        a.region,
		Service:       a.service,
		SignedHeaders: a.signedHeaders,
	}
	res.Time = p.t
	if res.SessionToken == "" && a.query {
		res.SessionToken = r.URL.Query().Get("X-Amz-Security-Token")
	}
	return res, nil
}

// signatureMatches computes the signature over payloadHash and compares it
// with the one the client sent.
func (p *Pending) signatureMatches(payloadHash string) bool {
	r, a := p.r, &p.a
	skip := ""
	if a.query {
		skip = "X-Amz-Signature"
	}
	query := canonicalQuery(r.URL.RawQuery, skip)
	bp := stsBuffers.Get().(*[]byte)
	defer stsBuffers.Put(bp)
	var mac hash.Hash
	if p.macs != nil {
		mac = p.macs.Get().(hash.Hash)
		defer func() {
			mac.Reset()
			p.macs.Put(mac)
		}()
	} else {
		mac = hmac.New(sha256.New, p.key)
	}
	var sum [sha256.Size]byte
	// First the AWS SDK form of the path (the escaped path encoded once
	// more); then, only when that differs, the path as sent, which is how
	// curl --aws-sigv4 signs paths with reserved characters. Both are
	// signed by the holder of the secret, so accepting either does not
	// weaken the check.
	escaped := r.URL.EscapedPath()
	double := canonicalURI(escaped)
	single := escaped
	if single == "" {
		single = "/"
	}
	for i, uri := range [2]string{double, single} {
		if i == 1 && single == double {
			break
		}
		*bp = appendStringToSign((*bp)[:0], r, uri, query, a.signedHeaders, payloadHash, p.amzDate, p.scope)
		if i > 0 {
			mac.Reset()
		}
		mac.Write(*bp)
		if hmac.Equal(mac.Sum(sum[:0]), a.sig[:]) {
			return true
		}
	}
	return false
}

// stsBuffers hold the canonical request and string to sign.
var stsBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// requireSigned enforces the headers AWS requires in SignedHeaders beyond
// Host (checked while parsing): the date header the request is dated by,
// Content-Type when it is sent, and every X-Amz-* header sent. Without this a
// signature over "host" alone would let anyone who sees one request replay it
// with another X-Amz-Target. Header names are reported as sent.
func requireSigned(r *http.Request, a *authFields, contentType bool) error {
	signed := func(name string) bool { return contains(a.signedHeaders, name) }
	must := func(name string) error {
		return fail(ErrSignature, fmt.Sprintf("'%s' must be a 'SignedHeader' in the AWS Authorization.", clip(name)))
	}
	if !a.query {
		if r.Header.Get("X-Amz-Date") != "" {
			if !signed("x-amz-date") {
				return must("X-Amz-Date")
			}
		} else if !signed("date") {
			return must("Date")
		}
	}
	if _, ok := r.Header["Content-Type"]; ok && contentType && !signed("content-type") {
		return must("Content-Type")
	}
	var missing []string
	for k := range r.Header {
		if len(k) < 6 || !strings.EqualFold(k[:6], "x-amz-") {
			continue
		}
		if !containsFold(a.signedHeaders, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing) // the same request always gets the same message
		return must(missing[0])
	}
	return nil
}

// containsFold is contains for a header name as sent (any case) against
// the lower-case signed names.
func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseAmzDate accepts the ISO 8601 basic format (X-Amz-Date) and, for the
// Date header fallback, the HTTP date formats.
func parseAmzDate(s string) (time.Time, error) {
	if t, err := time.Parse(timeFormat, s); err == nil {
		return t.UTC(), nil
	}
	t, err := http.ParseTime(s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// skewMessage follows AWS's wording for both directions.
func skewMessage(t, now time.Time, skew time.Duration) string {
	s := skewString(skew)
	if t.Before(now) {
		return fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
			t.Format(timeFormat), now.Add(-skew).Format(timeFormat), now.Format(timeFormat), s)
	}
	return fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s.)",
		t.Format(timeFormat), now.Add(skew).Format(timeFormat), now.Format(timeFormat), s)
}

func skewString(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return d.String()
}

// cachedKey finds the derived key of a scope, if it was derived from the
// secret whose SHA-256 is secretSum.
func (v *Verifier) cachedKey(akid, date, region, service string, secretSum *[32]byte) (keyCacheEntry, bool) {
	if m, _ := v.keys.Load().(map[keyCacheID]keyCacheEntry); m != nil {
		if e, ok := m[keyCacheID{akid, date, region, service}]; ok && hmac.Equal(e.secretSum[:], secretSum[:]) {
			return e, true
		}
	}
	return keyCacheEntry{}, false
}

// remember caches a derived key, but only after it verified a request, so
// clients cannot fill the cache with made-up scopes. Concurrent writers may
// drop each other's entries; that only costs a re-derivation.
func (v *Verifier) remember(akid string, sum *[32]byte, date, region, service string, key []byte) {
	id := keyCacheID{akid, date, region, service}
	old, _ := v.keys.Load().(map[keyCacheID]keyCacheEntry)
	if e, ok := old[id]; ok && e.secretSum == *sum {
		return
	}
	m := make(map[keyCacheID]keyCacheEntry, len(old)+1)
	if len(old) < maxKeyCache {
		for k, e := range old {
			m[k] = e
		}
	}
	m[id] = keyCacheEntry{secretSum: *sum, key: key, macs: newMACPool(key)}
	v.keys.Store(m)
}
