package sigv4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The AWS SigV4 test-suite credentials and time.
const (
	suiteAK     = "AKIDEXAMPLE"
	suiteSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
)

var suiteTime = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

func staticLookup(keys map[string]string) Lookup {
	return func(_ context.Context, ak string) (string, error) {
		s, ok := keys[ak]
		if !ok {
			return "", fmt.Errorf("access key %q: %w", ak, ErrUnknownAccessKey)
		}
		return s, nil
	}
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// TestAWSSuiteVectors verifies requests from AWS's published SigV4 test suite,
// with their published signatures: an independent check of the whole
// canonicalization and the HMAC chain.
func TestAWSSuiteVectors(t *testing.T) {
	cases := []struct {
		name, method, target, contentType, body string
		signedHeaders, signature                string
		headers                                 [][2]string
	}{
		{"get-vanilla", "GET", "/", "", "", "host;x-amz-date",
			"5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", nil},
		{"get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", "", "", "host;x-amz-date",
			"b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500", nil},
		{"post-vanilla", "POST", "/", "", "", "host;x-amz-date",
			"5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", nil},
		{"post-x-www-form-urlencoded", "POST", "/", "application/x-www-form-urlencoded", "Param1=value1",
			"content-type;host;x-amz-date",
			"ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a", nil},
		// The suite signs the UTF-8 path encoded once (curl-style); Verify
		// falls back to that form after the SDK double-encoded form.
		{"get-utf8", "GET", "/%E1%88%B4", "", "", "host;x-amz-date",
			"8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85", nil},
		{"get-header-key-duplicate", "GET", "/", "", "", "host;my-header1;x-amz-date",
			"c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
			[][2]string{{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}}},
		{"get-header-value-trim", "GET", "/", "", "", "host;my-header1;my-header2;x-amz-date",
			"acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
			[][2]string{{"My-Header1", " value1"}, {"My-Header2", ` "a   b   c"`}}},
	}
	v := &Verifier{Lookup: staticLookup(map[string]string{suiteAK: suiteSecret}), Now: fixedClock(suiteTime)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://example.amazonaws.com"+tc.target, strings.NewReader(tc.body))
			r.Header.Set("X-Amz-Date", "20150830T123600Z")
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			for _, h := range tc.headers {
				r.Header.Add(h[0], h[1])
			}
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders="+tc.signedHeaders+", Signature="+tc.signature)
			res, err := v.Verify(context.Background(), r, []byte(tc.body), Scope{Region: "us-east-1", Service: "service"})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.AccessKeyID != suiteAK || res.Region != "us-east-1" || res.Service != "service" || !res.Time.Equal(suiteTime) {
				t.Errorf("Result = %+v", res)
			}
			// One flipped signature digit must fail.
			bad := tc.signature[:63] + string("10"[strings.IndexByte("01", tc.signature[63])&1])
			if tc.signature[63] != '0' && tc.signature[63] != '1' {
				bad = tc.signature[:63] + "0"
			}
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders="+tc.signedHeaders+", Signature="+bad)
			if _, err := v.Verify(context.Background(), r, []byte(tc.body), Scope{Region: "us-east-1", Service: "service"}); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered signature: err = %v, want ErrSignature", err)
			}
		})
	}
}

// TestSignerMatchesSuite checks that Signer produces the suite's published
// Authorization headers.
func TestSignerMatchesSuite(t *testing.T) {
	cases := []struct {
		name, method, target, contentType, body, want string
	}{
		{"get-vanilla", "GET", "/", "", "",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", "", "",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
		{"post-x-www-form-urlencoded", "POST", "/", "application/x-www-form-urlencoded", "Param1=value1",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
	}
	s := &Signer{AccessKeyID: suiteAK, SecretAccessKey: suiteSecret, Region: "us-east-1", Service: "service", Now: fixedClock(suiteTime)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(tc.method, "http://example.amazonaws.com"+tc.target, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if err := s.Sign(r, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("Authorization"); got != tc.want {
				t.Errorf("Authorization =\n %s\nwant\n %s", got, tc.want)
			}
			if got := r.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
		})
	}
}

// echoServer starts a 127.0.0.1 server whose handler verifies every request
// and answers 200 with the access key id, or 403 with the error message and
// a header naming the sentinel.
func echoServer(t *testing.T, v *Verifier, want Scope) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		res, err := v.Verify(r.Context(), r, body, want)
		if err != nil {
			w.Header().Set("X-Kind", kindName(err))
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "%s %s", res.AccessKeyID, strings.Join(res.SignedHeaders, ";"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func kindName(err error) string {
	for name, k := range map[string]error{
		"missing": ErrMissingAuth, "incomplete": ErrIncomplete, "unknown": ErrUnknownAccessKey,
		"signature": ErrSignature, "expired": ErrExpired, "scope": ErrScope,
	} {
		if errors.Is(err, k) {
			return name
		}
	}
	return "other"
}

// TestAWSSDKSigner sends requests signed by aws-sdk-go-v2's own signer (which
// also signs content-length and amz-sdk headers) over real HTTP.
func TestAWSSDKSigner(t *testing.T) {
	now := time.Now().UTC()
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKIAKEYHOLDTEST": "s3cr3t/with+chars="})}
	srv := echoServer(t, v, Scope{Region: "eu-west-3", Service: "kms"})
	sdk := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: "AKIAKEYHOLDTEST", SecretAccessKey: "s3cr3t/with+chars=", SessionToken: "tok"}

	cases := []struct {
		name, path, body string
		extra            map[string]string
	}{
		{"kms encrypt", "/", `{"KeyId":"alias/x","Plaintext":"aGVsbG8="}`, map[string]string{"X-Amz-Target": "TrentService.Encrypt", "Amz-Sdk-Invocation-Id": "abc", "Amz-Sdk-Request": "attempt=1; max=3"}},
		{"empty body", "/", "", nil},
		{"path and query", "/a/b%20c/d", "{}", map[string]string{"X-Amz-Target": "TrentService.ListKeys"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", srv.URL+tc.path+"?b=2&a=1&a=0", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			for k, val := range tc.extra {
				req.Header.Set(k, val)
			}
			if err := sdk.SignHTTP(context.Background(), creds, req, hashHex([]byte(tc.body)), "kms", "eu-west-3", now); err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			if !strings.HasPrefix(string(got), "AKIAKEYHOLDTEST ") {
				t.Errorf("body = %q", got)
			}
			if len(tc.body) > 0 && !strings.Contains(string(got), "content-length") {
				t.Errorf("expected the SDK to sign content-length: %q", got)
			}
		})
	}
}

// TestBotocoreShape verifies a request shaped like boto3/CLI/curl ones:
// SignedHeaders content-type;host;x-amz-date;x-amz-target, no content-length,
// signed here by an independent, spelled-out canonical request.
func TestBotocoreShape(t *testing.T) {
	body := `{"KeyId":"alias/a","Plaintext":"aGk="}`
	at := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	canonical := strings.Join([]string{
		"POST", "/", "",
		"content-type:application/x-amz-json-1.1",
		"host:127.0.0.1:5600",
		"x-amz-date:20261122T152000Z",
		"x-amz-target:TrentService.Encrypt",
		"",
		"content-type;host;x-amz-date;x-amz-target",
		hashHex([]byte(body)),
	}, "\n")
	sts := "AWS4-HMAC-SHA256\n20261122T152000Z\n20261122/us-east-1/kms/aws4_request\n" + hashHex([]byte(canonical))
	key := hmacSHA256(hmacSHA256(hmacSHA256(hmacSHA256([]byte("AWS4test"), "20261122"), "us-east-1"), "kms"), "aws4_request")
	sig := fmt.Sprintf("%x", hmacSHA256(key, sts))

	r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.Encrypt")
	r.Header.Set("X-Amz-Date", "20261122T152000Z")
	r.Header.Set("User-Agent", "aws-cli/1.45.11")
	r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261122/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="+sig)
	v := &Verifier{Lookup: staticLookup(map[string]string{"test": "test"}), Now: fixedClock(at.Add(time.Minute))}
	res, err := v.Verify(context.Background(), r, []byte(body), Scope{Region: "us-east-1", Service: "kms"})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := strings.Join(res.SignedHeaders, ";"); got != "content-type;host;x-amz-date;x-amz-target" {
		t.Errorf("SignedHeaders = %s", got)
	}
}

// signedRequest returns a KMS-shaped request signed at time at.
func signedRequest(t *testing.T, at time.Time, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.Encrypt")
	s := &Signer{AccessKeyID: "AKID1", SecretAccessKey: "secret1", Region: "us-east-1", Service: "kms", Now: fixedClock(at)}
	if err := s.Sign(r, []byte(body)); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyErrors(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	const body = `{"KeyId":"k","Plaintext":"aGk="}`
	kms := Scope{Region: "us-east-1", Service: "kms"}
	cases := []struct {
		name   string
		at     time.Time
		mutate func(r *http.Request) []byte // returns the body to verify
		scope  Scope
		want   error // nil = must verify
		msg    string
	}{
		{name: "valid", want: nil},
		{name: "unsigned header changed", mutate: func(r *http.Request) []byte {
			r.Header.Set("User-Agent", "something-else")
			r.Header.Set("X-Forwarded-For", "1.2.3.4")
			return []byte(body)
		}},
		{name: "any region accepted", scope: Scope{Service: "kms"}},
		{name: "missing header", mutate: func(r *http.Request) []byte { r.Header.Del("Authorization"); return []byte(body) },
			want: ErrMissingAuth, msg: "Request is missing Authentication Token"},
		{name: "garbage header", mutate: func(r *http.Request) []byte { r.Header.Set("Authorization", "garbage"); return []byte(body) },
			want: ErrIncomplete},
		{name: "no signature param", mutate: func(r *http.Request) []byte {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:strings.Index(a, ", Signature=")])
			return []byte(body)
		}, want: ErrIncomplete, msg: "Authorization header requires 'Signature' parameter."},
		{name: "short credential", mutate: func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/kms/aws4_request", "/kms", 1))
			return []byte(body)
		}, want: ErrIncomplete},
		{name: "host not signed", mutate: func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;", "", 1))
			return []byte(body)
		}, want: ErrIncomplete},
		{name: "missing date", mutate: func(r *http.Request) []byte { r.Header.Del("X-Amz-Date"); return []byte(body) },
			want: ErrIncomplete},
		{name: "unknown key", mutate: func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AKID1/", "AKID2/", 1))
			return []byte(body)
		}, want: ErrUnknownAccessKey, msg: "The security token included in the request is invalid."},
		{name: "tampered body", mutate: func(r *http.Request) []byte { return []byte(strings.Replace(body, `"k"`, `"j"`, 1)) },
			want: ErrSignature},
		{name: "tampered signed header", mutate: func(r *http.Request) []byte {
			r.Header.Set("X-Amz-Target", "TrentService.Decrypt")
			return []byte(body)
		}, want: ErrSignature},
		{name: "tampered host", mutate: func(r *http.Request) []byte { r.Host = "127.0.0.1:5601"; return []byte(body) },
			want: ErrSignature},
		{name: "tampered date within skew", mutate: func(r *http.Request) []byte {
			r.Header.Set("X-Amz-Date", now.Add(time.Second).Format(timeFormat))
			return []byte(body)
		}, want: ErrSignature},
		{name: "tampered path", mutate: func(r *http.Request) []byte { r.URL.Path = "/x"; return []byte(body) },
			want: ErrSignature},
		{name: "added query", mutate: func(r *http.Request) []byte { r.URL.RawQuery = "a=b"; return []byte(body) },
			want: ErrSignature},
		{name: "skew -6 min", at: now.Add(-6 * time.Minute), want: ErrExpired,
			msg: "Signature expired: 20261122T151400Z is now earlier than 20261122T151500Z (20261122T152000Z - 5 min.)"},
		{name: "skew +6 min", at: now.Add(6 * time.Minute), want: ErrExpired,
			msg: "Signature not yet current: 20261122T152600Z is still later than 20261122T152500Z (20261122T152000Z + 5 min.)"},
		{name: "skew -4 min ok", at: now.Add(-4 * time.Minute)},
		{name: "skew +4 min ok", at: now.Add(4 * time.Minute)},
		{name: "wrong region", scope: Scope{Region: "eu-west-1", Service: "kms"}, want: ErrScope,
			msg: "Credential should be scoped to a valid region."},
		{name: "wrong service", scope: Scope{Region: "us-east-1", Service: "kms-xks-proxy"}, want: ErrScope,
			msg: "Credential should be scoped to correct service: 'kms-xks-proxy'."},
		{name: "scope date differs", mutate: func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/20261122/", "/20261121/", 1))
			return []byte(body)
		}, want: ErrScope},
		{name: "declared payload hash lies", mutate: func(r *http.Request) []byte {
			r.Header.Set("X-Amz-Content-Sha256", hashHex([]byte("other")))
			return []byte(body)
		}, want: ErrSignature},
		{name: "unsigned payload not signed", mutate: func(r *http.Request) []byte {
			r.Header.Set("X-Amz-Content-Sha256", UnsignedPayload)
			return []byte(body)
		}, want: ErrSignature},
		{name: "two authorization headers", mutate: func(r *http.Request) []byte {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
			return []byte(body)
		}, want: ErrIncomplete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = now
			}
			r := signedRequest(t, at, body)
			b := []byte(body)
			if tc.mutate != nil {
				b = tc.mutate(r)
			}
			scope := tc.scope
			if scope.Region == "" && scope.Service == "" && scope.Regions == nil {
				scope = kms
			}
			v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
			_, err := v.Verify(context.Background(), r, b, scope)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrMissingAuth, ErrIncomplete, ErrUnknownAccessKey, ErrSignature, ErrExpired, ErrScope} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err also wraps %v", other)
				}
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err.Error(), tc.msg)
			}
			if strings.Contains(err.Error(), "secret1") {
				t.Errorf("message leaks the secret: %q", err.Error())
			}
		})
	}
}

// TestExpectedSignatureNeverLeaks checks that no error message carries the
// signature the server computed.
func TestExpectedSignatureNeverLeaks(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	r := signedRequest(t, now, "{}")
	a := r.Header.Get("Authorization")
	good := a[len(a)-64:]
	r.Header.Set("Authorization", a[:len(a)-64]+strings.Repeat("0", 64))
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	_, err := v.Verify(context.Background(), r, []byte("{}"), Scope{Region: "us-east-1", Service: "kms"})
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), good) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), good) {
		t.Fatal("error carries the expected signature")
	}
}

func TestLookupInternalError(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	boom := errors.New("database is down")
	v := &Verifier{Lookup: func(context.Context, string) (string, error) { return "", boom }, Now: fixedClock(now)}
	_, err := v.Verify(context.Background(), signedRequest(t, now, "{}"), []byte("{}"), Scope{Service: "kms"})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the lookup error wrapped", err)
	}
	for _, s := range []error{ErrMissingAuth, ErrIncomplete, ErrUnknownAccessKey, ErrSignature, ErrExpired, ErrScope} {
		if errors.Is(err, s) {
			t.Errorf("internal error wraps sentinel %v", s)
		}
	}
}

// TestSignerRoundTrip signs with Signer and verifies over real HTTP, in the
// KMS shape and in the XKS proxy shape (path with a prefix, service
// kms-xks-proxy, session token, declared payload hash).
func TestSignerRoundTrip(t *testing.T) {
	cases := []struct {
		name, service, path, body string
		token                     string
		headers                   map[string]string
	}{
		{"kms", "kms", "/", `{"KeyId":"alias/a"}`, "", map[string]string{"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"}},
		{"xks encrypt", "kms-xks-proxy", "/example/kms/xks/v1/keys/k1/encrypt",
			`{"requestMetadata":{"kmsRequestId":"r","kmsOperation":"Encrypt","awsPrincipalArn":"AWS Internal","kmsKeyArn":"arn"},"plaintext":"aGk=","encryptionAlgorithm":"AES_GCM"}`,
			"", map[string]string{"Content-Type": "application/json"}},
		{"session token and payload header", "kms", "/", "{}", "FQoGZXIvYXdzEXAMPLE", map[string]string{"X-Amz-Content-Sha256": "", "Content-Type": "application/x-amz-json-1.1"}},
		{"odd path characters", "kms-xks-proxy", "/pre fix/kms/xks/v1/keys/a:b$c/encrypt", "{}", "", nil},
		{"header with spaces", "kms", "/", "{}", "", map[string]string{"X-Amz-Meta": "  a   b  c "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Lookup: staticLookup(map[string]string{"AKIAXKS": "xks-secret-0123456789"})}
			srv := echoServer(t, v, Scope{Region: "us-east-1", Service: tc.service})
			s := &Signer{AccessKeyID: "AKIAXKS", SecretAccessKey: "xks-secret-0123456789", SessionToken: tc.token, Region: "us-east-1", Service: tc.service}
			req, err := http.NewRequest("POST", srv.URL+tc.path, bytes.NewReader([]byte(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			for k, val := range tc.headers {
				req.Header.Set(k, val)
			}
			// Sign twice: the second signature (cached key) must also verify.
			for i := 0; i < 2; i++ {
				if err := s.Sign(req, []byte(tc.body)); err != nil {
					t.Fatal(err)
				}
				req.Body = io.NopCloser(bytes.NewReader([]byte(tc.body)))
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("attempt %d: status %d (%s): %s", i, resp.StatusCode, resp.Header.Get("X-Kind"), got)
				}
			}
			if tc.token != "" && req.Header.Get("X-Amz-Security-Token") != tc.token {
				t.Error("session token header not set")
			}
			if _, ok := tc.headers["X-Amz-Content-Sha256"]; ok && tc.headers["X-Amz-Content-Sha256"] == "" &&
				req.Header.Get("X-Amz-Content-Sha256") != hashHex([]byte(tc.body)) {
				t.Error("X-Amz-Content-Sha256 not filled with the body hash")
			}
		})
	}
}

func TestVerifierSessionTokenAndKeyRotation(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	keys := map[string]string{"AKID1": "old"}
	v := &Verifier{Lookup: staticLookup(keys), Now: fixedClock(now)}
	sign := func(secret string) *http.Request {
		r := httptest.NewRequest("POST", "http://127.0.0.1:1/", nil)
		s := &Signer{AccessKeyID: "AKID1", SecretAccessKey: secret, SessionToken: "tok", Region: "us-east-1", Service: "kms", Now: fixedClock(now)}
		if err := s.Sign(r, nil); err != nil {
			t.Fatal(err)
		}
		return r
	}
	res, err := v.Verify(context.Background(), sign("old"), nil, Scope{Service: "kms"})
	if err != nil || res.SessionToken != "tok" {
		t.Fatalf("res=%+v err=%v", res, err)
	}
	// Rotate the secret: the cached derived key of "old" must not be used.
	keys["AKID1"] = "new"
	if _, err := v.Verify(context.Background(), sign("old"), nil, Scope{Service: "kms"}); !errors.Is(err, ErrSignature) {
		t.Fatalf("old secret after rotation: err = %v", err)
	}
	if _, err := v.Verify(context.Background(), sign("new"), nil, Scope{Service: "kms"}); err != nil {
		t.Fatalf("new secret: %v", err)
	}
}

func TestQueryStringAuth(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	build := func(expires string, at time.Time) *http.Request {
		amz := at.Format(timeFormat)
		q := "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID1%2F" + amz[:8] + "%2Fus-east-1%2Fkms%2Faws4_request" +
			"&X-Amz-Date=" + amz + "&X-Amz-Expires=" + expires + "&X-Amz-SignedHeaders=host&Action=ListKeys"
		r := httptest.NewRequest("GET", "http://127.0.0.1:5600/?"+q, nil)
		scope := amz[:8] + "/us-east-1/kms/aws4_request"
		sts := stringToSign(r, "/", canonicalQuery(r.URL.RawQuery, ""), []string{"host"}, emptySHA256, amz, scope)
		sig := fmt.Sprintf("%x", hmacSHA256(deriveKey("secret1", amz[:8], "us-east-1", "kms"), sts))
		r.URL.RawQuery += "&X-Amz-Signature=" + sig
		return r
	}
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	cases := []struct {
		name    string
		expires string
		at      time.Time
		want    error
	}{
		{"valid", "300", now.Add(-time.Minute), nil},
		{"expired", "30", now.Add(-time.Minute), ErrExpired},
		{"bad expires", "abc", now, ErrIncomplete},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), build(tc.expires, tc.at), nil, Scope{Region: "us-east-1", Service: "kms"})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignerDoesNotPrintSecrets(t *testing.T) {
	s := Signer{AccessKeyID: "AKIDPRINT", SecretAccessKey: "very-secret-value", SessionToken: "session-token-value", Region: "us-east-1", Service: "kms"}
	holder := struct{ S Signer }{s}
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), fmt.Sprintf("%v %+v", &s, &s),
		fmt.Sprintf("%v %+v %#v", holder, holder, holder),
	} {
		if strings.Contains(out, "very-secret-value") || strings.Contains(out, "session-token-value") {
			t.Fatalf("printed a secret: %s", out)
		}
		if !strings.Contains(out, "AKIDPRINT") {
			t.Fatalf("access key id missing from %s", out)
		}
	}
}

func TestSignerConcurrent(t *testing.T) {
	v := &Verifier{Lookup: staticLookup(map[string]string{"AK": "SK"})}
	s := &Signer{AccessKeyID: "AK", SecretAccessKey: "SK", Region: "us-east-1", Service: "kms"}
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				r := httptest.NewRequest("POST", "http://127.0.0.1:9/", nil)
				body := []byte(fmt.Sprint(i))
				if err = s.Sign(r, body); err == nil {
					_, err = v.Verify(context.Background(), r, body, Scope{Service: "kms"})
				}
			}
			errs <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCanonicalPieces(t *testing.T) {
	cases := []struct{ name, got, want string }{
		{"uri empty", canonicalURI(""), "/"},
		{"uri double encodes", canonicalURI("/a%20b/c"), "/a%2520b/c"},
		{"uri keeps unreserved", canonicalURI("/kms/xks/v1/keys/k-1_a.b~/encrypt"), "/kms/xks/v1/keys/k-1_a.b~/encrypt"},
		{"uri no cleaning", canonicalURI("/a//b/../c"), "/a//b/../c"},
		{"query sorted", canonicalQuery("b=2&a=2&a=1&c", ""), "a=1&a=2&b=2&c="},
		{"query encoded", canonicalQuery("k=a+b&x=%7E%2F", ""), "k=a%20b&x=~%2F"},
		{"query skip", canonicalQuery("X-Amz-Signature=ff&a=1", "X-Amz-Signature"), "a=1"},
		{"trim", trimValue("  a   b \t"), "a b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// TestDateHeaderFallback: without X-Amz-Date, the HTTP Date header dates the
// request; the string to sign still uses the ISO 8601 basic form.
func TestDateHeaderFallback(t *testing.T) {
	at := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader("{}"))
	r.Header.Set("Date", at.Format(http.TimeFormat))
	sts := stringToSign(r, "/", "", []string{"date", "host"}, hashHex([]byte("{}")), "20261122T152000Z", "20261122/us-east-1/kms/aws4_request")
	sig := fmt.Sprintf("%x", hmacSHA256(deriveKey("secret1", "20261122", "us-east-1", "kms"), sts))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID1/20261122/us-east-1/kms/aws4_request, SignedHeaders=date;host, Signature="+sig)
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(at.Add(2 * time.Minute))}
	res, err := v.Verify(context.Background(), r, []byte("{}"), Scope{Region: "us-east-1", Service: "kms"})
	if err != nil || !res.Time.Equal(at) {
		t.Fatalf("res=%+v err=%v", res, err)
	}
	r.Header.Set("Date", "yesterday")
	if _, err := v.Verify(context.Background(), r, []byte("{}"), Scope{Service: "kms"}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("bad Date: err = %v", err)
	}
}

// TestSignPartsMatchesSign: SignParts signs what Sign signs for the same
// request (Sign's signatures are checked against the SDK's and Verify's
// elsewhere).
func TestSignPartsMatchesSign(t *testing.T) {
	at := time.Date(2026, 12, 2, 13, 4, 5, 0, time.UTC)
	s := &Signer{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", Region: "us-east-1",
		Service: "kms-xks-proxy", Now: func() time.Time { return at }}
	for _, tc := range []struct{ host, path, ctype, body string }{
		{"127.0.0.1:9443", "/example/kms/xks/v1/keys/key-1/encrypt", "application/json", `{"a":"b"}`},
		{"xks.example.com", "/kms/xks/v1/health", "application/json", ""},
		{"[::1]:443", "/p/a%20b/kms/xks/v1/keys/k.1_-/decrypt", " application/json  ;  x ", "{}"},
	} {
		r, err := http.NewRequest(http.MethodPost, "https://"+tc.host+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", tc.ctype)
		if err := s.Sign(r, []byte(tc.body)); err != nil {
			t.Fatal(err)
		}
		date, auth, err := s.SignParts(http.MethodPost, tc.host, tc.path, []Header{{"content-type", tc.ctype}}, []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if date != r.Header.Get("X-Amz-Date") || auth != r.Header.Get("Authorization") {
			t.Errorf("%s%s: SignParts gave\n%s %s\nSign gave\n%s %s", tc.host, tc.path, date, auth, r.Header.Get("X-Amz-Date"), r.Header.Get("Authorization"))
		}
	}
	if _, _, err := s.SignParts(http.MethodPost, "h", "/", []Header{{"host", "x"}}, nil); err == nil {
		t.Error("SignParts accepted a host header of the caller's")
	}
}
