package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyhold/keyhold/internal/bench"
	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/logs"
	"github.com/keyhold/keyhold/internal/sigv4"
)

// BenchmarkEncryptHandler measures the server's cost of one signed Encrypt
// (SigV4 verify, model validation, crypto, JSON), without the network.
func BenchmarkEncryptHandler(b *testing.B) {
	t := &testing.T{}
	e := start(t)
	k, err := e.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"KeyId":"` + *k.KeyMetadata.KeyId + `","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`
	signer := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4599/", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "TrentService.Encrypt")
			signer.Sign(req, []byte(body))
			w := httptest.NewRecorder()
			e.Instance.Handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// TestBenchSignVerify runs `keyhold bench --op sign|verify` briefly against
// a real server: every request succeeds (the numbers come from real runs,
// not from this test).
func TestBenchSignVerify(t *testing.T) {
	e := start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", e.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", e.Secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	for _, tc := range []struct{ op, spec, alg string }{
		{"sign", "ECC_NIST_P256", ""}, {"verify", "ECC_NIST_EDWARDS25519", "ED25519_PH_SHA_512"}, {"sign", "ML_DSA_44", ""},
	} {
		var out, errOut bytes.Buffer
		args := []string{"--endpoint", e.Endpoint, "--op", tc.op, "--key-spec", tc.spec, "--duration", "300ms", "--concurrency", "2", "--json"}
		if tc.alg != "" {
			args = append(args, "--signing-algorithm", tc.alg)
		}
		if err := bench.Command(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("%s %s: %v\n%s", tc.op, tc.spec, err, errOut.String())
		}
		var rep bench.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Requests == 0 || rep.Errors != 0 || rep.KeySpec != tc.spec {
			t.Fatalf("%s %s: %+v", tc.op, tc.spec, rep)
		}
	}
}

// BenchmarkServe is the server's own cost of one request as loadgen sends
// it (32-byte plaintext, encryption context bench=loadgen): SigV4 verify,
// input validation, authorization, the domain, the answer's JSON, the audit
// event (encoded and written) and the request's log line (logs.New's text
// handler, discarded).
// The request is signed once and replayed (SigV4 has no replay cache; the
// signature stays valid for the 5-minute skew), and the request and
// response writer are reused, so allocs/op are the server's alone.
//
//	go test -run '^$' -bench Serve -benchmem -cpu 1 -count 8 ./internal/integration/
func BenchmarkServe(b *testing.B) {
	t := &testing.T{}
	// The request log line as keyhold serve writes it (logs.New), discarded.
	log, _, err := logs.New(io.Discard, "text", "info")
	if err != nil {
		b.Fatal(err)
	}
	e := startWith(t, t.TempDir(), func(cfg *cli.ServeConfig) { cfg.Logger = log })
	k, err := e.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	id := *k.KeyMetadata.KeyId
	for _, bc := range []struct{ op, body string }{
		{"Encrypt", `{"EncryptionContext":{"bench":"loadgen"},"KeyId":"` + id + `","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`},
		{"GenerateDataKey", `{"EncryptionContext":{"bench":"loadgen"},"KeyId":"` + id + `","KeySpec":"AES_256"}`},
	} {
		b.Run(bc.op, func(b *testing.B) {
			signer := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
			body := &replayBody{b: []byte(bc.body)}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4599/", body)
			req.ContentLength = int64(len(body.b))
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			req.Header.Set("X-Amz-Target", "TrentService."+bc.op)
			req.Header.Set("User-Agent", "Go-http-client/1.1")
			if err := signer.Sign(req, body.b); err != nil {
				b.Fatal(err)
			}
			w := &replayWriter{h: make(http.Header, 4)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				body.r.Reset(body.b)
				clear(w.h)
				w.code = 0
				e.Instance.Handler.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// replayBody is a request body read again for every replay.
type replayBody struct {
	b []byte
	r bytes.Reader
}

func (r *replayBody) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *replayBody) Close() error               { return nil }

// replayWriter is a ResponseWriter that keeps nothing but the status.
type replayWriter struct {
	h    http.Header
	code int
}

func (w *replayWriter) Header() http.Header         { return w.h }
func (w *replayWriter) WriteHeader(code int)        { w.code = code }
func (w *replayWriter) Write(p []byte) (int, error) { return len(p), nil }
