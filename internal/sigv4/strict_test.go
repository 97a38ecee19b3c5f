package sigv4

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStrictSignedHeaders covers issue 14's forgeries: a signature that
// leaves out a header the request carries (X-Amz-Target above all), an
// UNSIGNED-PAYLOAD signature, and a body swapped under a signature, each
// refused; and the three header sets real clients sign, each accepted.
func TestStrictSignedHeaders(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	const body = `{"KeyId":"alias/a"}`
	scope := Scope{Region: "us-east-1", Service: "kms"}
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	// sign signs r with the headers set before the call; after() then adds
	// headers the signature does not cover.
	sign := func(before, after map[string]string, b string) *http.Request {
		r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader(b))
		for k, val := range before {
			r.Header.Set(k, val)
		}
		s := &Signer{AccessKeyID: "AKID1", SecretAccessKey: "secret1", Region: "us-east-1", Service: "kms", Now: fixedClock(now)}
		if err := s.Sign(r, []byte(b)); err != nil {
			t.Fatal(err)
		}
		for k, val := range after {
			r.Header.Set(k, val)
		}
		return r
	}
	ct := "application/x-amz-json-1.1"
	cases := []struct {
		name          string
		before, after map[string]string
		signedBody    string
		sentBody      string
		want          error
		msg           string
		beginFails    bool // refused from the headers alone, before any body
	}{
		{name: "boto3/CLI/curl set", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey"}},
		{name: "Go SDK set", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey",
			"Amz-Sdk-Invocation-Id": "x", "Amz-Sdk-Request": "attempt=1; max=3", "Content-Length": "19"}},
		{name: "JS v3 set with payload hash", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey",
			"X-Amz-Content-Sha256": "", "X-Amz-User-Agent": "aws-sdk-js/3"}},
		{name: "X-Amz-Target not signed", before: map[string]string{"Content-Type": ct},
			after: map[string]string{"X-Amz-Target": "TrentService.DisableKey"}, want: ErrSignature, beginFails: true,
			msg: "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization."},
		{name: "Content-Type not signed", before: map[string]string{"X-Amz-Target": "TrentService.DescribeKey"},
			after: map[string]string{"Content-Type": ct}, want: ErrSignature, beginFails: true,
			msg: "'Content-Type' must be a 'SignedHeader' in the AWS Authorization."},
		{name: "other x-amz header not signed", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey"},
			after: map[string]string{"X-Amz-Security-Token": "tok"}, want: ErrSignature, beginFails: true,
			msg: "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."},
		{name: "UNSIGNED-PAYLOAD signed", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey",
			"X-Amz-Content-Sha256": UnsignedPayload}, want: ErrSignature, beginFails: true, msg: ErrSignature.Error()},
		{name: "UNSIGNED-PAYLOAD signed, body swapped", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey",
			"X-Amz-Content-Sha256": UnsignedPayload}, sentBody: `{"KeyId":"alias/b"}`, want: ErrSignature, beginFails: true},
		{name: "body swapped", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey"},
			sentBody: `{"KeyId":"alias/b"}`, want: ErrSignature, msg: ErrSignature.Error()},
		{name: "body swapped under a signed hash", before: map[string]string{"Content-Type": ct, "X-Amz-Target": "TrentService.DescribeKey",
			"X-Amz-Content-Sha256": ""}, sentBody: `{"KeyId":"alias/b"}`, want: ErrSignature,
			msg: "The provided 'x-amz-content-sha256' header does not match what was computed."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sign(tc.before, tc.after, body)
			sent := body
			if tc.sentBody != "" {
				sent = tc.sentBody
			}
			p, err := v.Begin(context.Background(), r, scope)
			if tc.beginFails {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Begin: err = %v, want %v", err, tc.want)
				}
			} else {
				if err != nil {
					t.Fatalf("Begin: %v", err)
				}
				if _, has := tc.before["X-Amz-Content-Sha256"]; has != p.SignatureChecked() {
					t.Errorf("SignatureChecked = %v with a signed body hash %v", p.SignatureChecked(), has)
				}
				_, err = p.Finish([]byte(sent))
				if tc.want == nil {
					if err != nil {
						t.Fatalf("Finish: %v", err)
					}
					return
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("Finish: err = %v, want %v", err, tc.want)
				}
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err.Error(), tc.msg)
			}
		})
	}
}

// TestDateHeaderMustBeSigned: the header the request is dated by is signed.
func TestDateHeaderMustBeSigned(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	r := signedRequest(t, now, "{}")
	a := r.Header.Get("Authorization")
	r.Header.Set("Authorization", strings.Replace(a, ";x-amz-date", "", 1))
	_, err := v.Verify(context.Background(), r, []byte("{}"), Scope{Service: "kms"})
	if !errors.Is(err, ErrSignature) || err.Error() != "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization." {
		t.Fatalf("err = %v", err)
	}
}
