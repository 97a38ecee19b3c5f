package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyhold/keyhold/internal/bench"
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
