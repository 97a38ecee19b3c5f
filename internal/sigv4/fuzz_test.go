package sigv4

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary Authorization headers and dates to Verify. It
// must never panic, must reject with exactly one sentinel (the lookup here
// never fails internally), and must never accept a header it did not sign.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 11, 22, 15, 20, 0, 0, time.UTC)
	f.Add("AWS4-HMAC-SHA256 Credential=AKID1/20261122/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("a", 64), "20261122T152000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=AKID1/20261122/us-east-1/kms/aws4_request,SignedHeaders=host,Signature=00", "20261122T152000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;;, Signature=", "")
	f.Add("AWS4-HMAC-SHA256 ,,,=,=,Credential==", "Sun, 22 Nov 2026 15:20:00 GMT")
	f.Add("AWS AKID:c2ln", "20261122T152000Z")
	f.Add("", "")
	sentinels := []error{ErrMissingAuth, ErrIncomplete, ErrUnknownAccessKey, ErrSignature, ErrExpired, ErrScope}
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	f.Fuzz(func(t *testing.T, auth, date string) {
		r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader("{}"))
		r.Header["Authorization"] = []string{auth}
		if date != "" {
			r.Header["X-Amz-Date"] = []string{date}
		}
		_, err := v.Verify(context.Background(), r, []byte("{}"), Scope{Region: "us-east-1", Service: "kms"})
		if err == nil {
			t.Fatalf("accepted a made-up signature: %q", auth)
		}
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q wraps %d sentinels", err, n)
		}
		if strings.Contains(err.Error(), "secret1") {
			t.Fatalf("error leaks the secret: %q", err)
		}
	})
}
