// Package sigv4 verifies and produces AWS Signature Version 4 (AWS4-HMAC-SHA256)
// request signatures: Verifier for the servers (the KMS endpoint, the XKS proxy),
// Signer for the clients (the XKS client, keyhold bench).
//
// Canonicalization is done here by hand rather than by re-signing with an SDK
// signer, because every client signs a different header set (curl and botocore
// leave out content-length; the Go SDK adds it) and the verifier must
// canonicalize exactly the headers the client named in SignedHeaders.
//
// This package must never put a secret access key, a derived signing key or the
// expected signature into an error, a log line or a printed value.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors. Verify returns errors that wrap exactly one of them; the
// Error() text is safe to send to the client.
var (
	// ErrMissingAuth: no Authorization header and no query-string signature
	// (KMS: MissingAuthenticationTokenException).
	ErrMissingAuth = errors.New("Request is missing Authentication Token")
	// ErrIncomplete: a malformed Authorization header, a missing date or
	// credential part (KMS: IncompleteSignatureException).
	ErrIncomplete = errors.New("incomplete signature")
	// ErrUnknownAccessKey: Lookup does not know the access key id
	// (KMS: UnrecognizedClientException).
	ErrUnknownAccessKey = errors.New("The security token included in the request is invalid.")
	// ErrSignature: the signature does not match (KMS: InvalidSignatureException).
	ErrSignature = errors.New("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	// ErrExpired: the request time is outside the allowed clock skew
	// (KMS: InvalidSignatureException).
	ErrExpired = errors.New("signature expired")
	// ErrScope: the credential scope names the wrong region, service, date or
	// terminator (KMS: InvalidSignatureException).
	ErrScope = errors.New("invalid credential scope")
)

// Error is what Verify returns for a rejected request: a client-safe message
// and exactly one sentinel for errors.Is.
type Error struct {
	kind error
	msg  string
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.kind }

func fail(kind error, msg string) error {
	if msg == "" {
		msg = kind.Error()
	}
	return &Error{kind: kind, msg: msg}
}

const (
	algorithm  = "AWS4-HMAC-SHA256"
	terminator = "aws4_request"
	timeFormat = "20060102T150405Z"
	dateFormat = "20060102"

	// UnsignedPayload is the X-Amz-Content-Sha256 value that opts out of
	// hashing the body. Only S3 honours it; Verify refuses it, as every
	// other AWS service does (the signature cannot match).
	UnsignedPayload = "UNSIGNED-PAYLOAD"
)

var emptySHA256 = hashHex(nil)

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// deriveKey is the SigV4 HMAC chain: "AWS4"+secret, date, region, service, "aws4_request".
func deriveKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, terminator)
}

// isUnreserved reports the RFC 3986 unreserved characters, the only ones
// SigV4's URI encoding leaves alone.
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

const upperhex = "0123456789ABCDEF"

// uriEncode percent-encodes every byte except unreserved ones (and '/' when
// keepSlash), with upper-case hex, as SigV4 requires.
func uriEncode(s string, keepSlash bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (keepSlash && c == '/') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperhex[c>>4])
		b.WriteByte(upperhex[c&15])
	}
	return b.String()
}

// canonicalURI encodes the path as sent (already escaped once) a second time,
// as the AWS SDKs and botocore do for every service but S3. No dot-segment
// removal or slash merging: the XKS spec signs the path exactly as sent.
func canonicalURI(escapedPath string) string {
	if escapedPath == "" {
		return "/"
	}
	return uriEncode(escapedPath, true)
}

// canonicalQuery decodes the raw query and re-encodes it the SigV4 way,
// sorted by key, then value. skip names a parameter to leave out (the
// signature itself in query-string auth).
func canonicalQuery(rawQuery, skip string) string {
	if rawQuery == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if skip != "" && k == skip {
			continue
		}
		pairs = append(pairs, kv{uriEncode(k, false), uriEncode(v, false)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// trimValue trims a header value and collapses runs of spaces into one.
func trimValue(v string) string {
	v = strings.Trim(v, " \t")
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// headerValue returns the canonical value of one (lower-case) header name as
// the client saw it when signing. Go's HTTP machinery moves Host,
// Content-Length and Transfer-Encoding out of r.Header; they are rebuilt here.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		if r.Host != "" {
			return trimValue(r.Host)
		}
		if r.URL != nil {
			return trimValue(r.URL.Host)
		}
		return ""
	case "content-length":
		if vs := r.Header.Values("Content-Length"); len(vs) > 0 {
			return joinValues(vs)
		}
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
		return ""
	case "transfer-encoding":
		if vs := r.Header.Values("Transfer-Encoding"); len(vs) > 0 {
			return joinValues(vs)
		}
		return strings.Join(r.TransferEncoding, ",")
	}
	var vs []string
	var ok bool
	var buf [64]byte
	if n := canonicalKey(buf[:], name); n > 0 {
		vs, ok = r.Header[string(buf[:n])] // a lookup by string(bytes) does not copy
	} else {
		vs, ok = r.Header[http.CanonicalHeaderKey(name)]
	}
	if !ok {
		// Headers set with non-canonical keys by direct map access.
		for k, v := range r.Header {
			if strings.EqualFold(k, name) {
				vs = append(vs, v...)
			}
		}
	}
	return joinValues(vs)
}

// canonicalKey writes http.CanonicalHeaderKey(name) into buf for the
// lower-case names clients sign (letters, digits, '-'), returning its
// length; 0 means "use http.CanonicalHeaderKey".
func canonicalKey(buf []byte, name string) int {
	if len(name) > len(buf) {
		return 0
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case c >= '0' && c <= '9', c == '-':
		default:
			return 0
		}
		buf[i] = c
		upper = c == '-'
	}
	return len(name)
}

func joinValues(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return trimValue(vs[0])
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = trimValue(v)
	}
	return strings.Join(out, ",")
}

// stringToSign builds the canonical request and hashes it into the string to
// sign. signed must already be lower-case, in the order the client listed.
func stringToSign(r *http.Request, uri, query string, signed []string, payloadHash, amzDate, scope string) string {
	return string(appendStringToSign(nil, r, uri, query, signed, payloadHash, amzDate, scope))
}

// appendStringToSign is stringToSign appending to dst (which it also uses
// as scratch space for the canonical request).
func appendStringToSign(dst []byte, r *http.Request, uri, query string, signed []string, payloadHash, amzDate, scope string) []byte {
	c := dst[len(dst):]
	c = append(c, r.Method...)
	c = append(c, '\n')
	c = append(c, uri...)
	c = append(c, '\n')
	c = append(c, query...)
	c = append(c, '\n')
	for _, h := range signed {
		c = append(c, h...)
		c = append(c, ':')
		c = append(c, headerValue(r, h)...)
		c = append(c, '\n')
	}
	c = append(c, '\n')
	for i, h := range signed {
		if i > 0 {
			c = append(c, ';')
		}
		c = append(c, h...)
	}
	c = append(c, '\n')
	c = append(c, payloadHash...)
	return appendHashedStringToSign(dst, amzDate, scope, c)
}

// appendHashedStringToSign appends the string to sign of the canonical
// request canonical to dst. canonical is hashed first, so it may share dst's
// backing array past len(dst).
func appendHashedStringToSign(dst []byte, amzDate, scope string, canonical []byte) []byte {
	sum := sha256.Sum256(canonical)
	dst = append(dst, algorithm...)
	dst = append(dst, '\n')
	dst = append(dst, amzDate...)
	dst = append(dst, '\n')
	dst = append(dst, scope...)
	dst = append(dst, '\n')
	return hex.AppendEncode(dst, sum[:])
}
