package sigv4

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const benchBody = `{"KeyId":"alias/bench","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`

func BenchmarkSign(b *testing.B) {
	s := &Signer{AccessKeyID: "AKID1", SecretAccessKey: "secret1", Region: "us-east-1", Service: "kms"}
	body := []byte(benchBody)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", nil)
		r.Header.Set("Content-Type", "application/x-amz-json-1.1")
		r.Header.Set("X-Amz-Target", "TrentService.Encrypt")
		if err := s.Sign(r, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	s := &Signer{AccessKeyID: "AKID1", SecretAccessKey: "secret1", Region: "us-east-1", Service: "kms", Now: fixedClock(now)}
	body := []byte(benchBody)
	r := httptest.NewRequest("POST", "http://127.0.0.1:5600/", strings.NewReader(benchBody))
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.Encrypt")
	if err := s.Sign(r, body); err != nil {
		b.Fatal(err)
	}
	v := &Verifier{Lookup: staticLookup(map[string]string{"AKID1": "secret1"}), Now: fixedClock(now)}
	ctx := context.Background()
	want := Scope{Region: "us-east-1", Service: "kms"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, r, body, want); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	for _, name := range []string{"x-amz-date", "content-type", "host", "x-amz-content-sha256", "a", "x--y", "1x", "x_y", "x.y", strings.Repeat("a", 80)} {
		var buf [64]byte
		n := canonicalKey(buf[:], name)
		if n == 0 {
			if name != "x_y" && name != "x.y" && len(name) <= 64 {
				t.Errorf("canonicalKey(%q) fell back", name)
			}
			continue
		}
		if got, want := string(buf[:n]), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("canonicalKey(%q) = %q, want %q", name, got, want)
		}
	}
}
