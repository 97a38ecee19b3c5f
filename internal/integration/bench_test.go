package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"

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
