package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/sigv4"
)

// raw sends a hand-built, SigV4-signed (when signer is set) request.
func (e *env) raw(t *testing.T, signer *sigv4.Signer, target, body string) (int, map[string]string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	if signer != nil {
		if err := signer.Sign(req, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]string
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("error body is not JSON: %q", b)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func TestProtocolErrors(t *testing.T) {
	e := start(t)
	good := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	cases := []struct {
		name, target, body string
		signer             *sigv4.Signer
		status             int
		typ                string
	}{
		{"unknown operation", "TrentService.MakeCoffee", "{}", good, 400, "UnknownOperationException"},
		{"unknown prefix", "NotKMS.ListKeys", "{}", good, 400, "UnknownOperationException"},
		{"no target", "", "{}", good, 400, "UnknownOperationException"},
		{"malformed json", "TrentService.ListKeys", "{", good, 400, "SerializationException"},
		{"wrong type", "TrentService.ListKeys", `{"Limit":"ten"}`, good, 400, "SerializationException"},
		{"unknown member", "TrentService.ListKeys", `{"Limitt":10}`, good, 400, "SerializationException"},
		{"bad base64", "TrentService.Decrypt", `{"CiphertextBlob":"%%%"}`, good, 400, "SerializationException"},
		{"out of range", "TrentService.ListKeys", `{"Limit":5000}`, good, 400, "ValidationException"},
		{"missing required", "TrentService.Encrypt", `{"Plaintext":"eA=="}`, good, 400, "ValidationException"},
		{"bad enum", "TrentService.CreateKey", `{"KeySpec":"AES_999"}`, good, 400, "ValidationException"},
		{"missing auth", "TrentService.ListKeys", "{}", nil, 400, "MissingAuthenticationTokenException"},
		{"unknown access key", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}, 400, "UnrecognizedClientException"},
		{"wrong secret", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: "wrong", Region: "us-east-1", Service: "kms"}, 400, "InvalidSignatureException"},
		// KMS answers every Region behind the one endpoint; a scope that is
		// not a Region name is refused.
		{"not a region", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "eu_west_1", Service: "kms"}, 400, "InvalidSignatureException"},
		{"region too long", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "abcdefghijklmnop-qrstuvwxyzabcd-1", Service: "kms"}, 400, "InvalidSignatureException"},
		{"wrong service", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "s3"}, 400, "InvalidSignatureException"},
		{"clock skew", "TrentService.ListKeys", "{}", &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms",
			Now: func() time.Time { return time.Now().Add(-6 * time.Minute) }}, 400, "InvalidSignatureException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body, hdr := e.raw(t, tc.signer, tc.target, tc.body)
			if st != tc.status || body["__type"] != tc.typ || body["message"] == "" {
				t.Fatalf("got %d %v, want %d %s with a message", st, body, tc.status, tc.typ)
			}
			if hdr.Get("x-amzn-RequestId") == "" {
				t.Fatal("no x-amzn-RequestId header")
			}
			if strings.Contains(body["message"], e.Secret) {
				t.Fatal("secret in error message")
			}
		})
	}
	// A body signed and then changed fails.
	req, _ := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(`{"Limit":5}`))
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	good.Sign(req, []byte(`{"Limit":1}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("tampered body: status %d", resp.StatusCode)
	}
	// And a good raw request works, so the failures above are about what they change.
	if st, _, _ := e.raw(t, good, "TrentService.ListKeys", `{"Limit":5}`); st != 200 {
		t.Fatalf("good raw request: %d", st)
	}
}

func TestSDKSignatureErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	_, err := e.client(t, e.AccessKey, "not-the-secret").ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "InvalidSignatureException")
	_, err = e.client(t, "AKIAIOSFODNN7EXAMPLE", e.Secret).ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")
	// Request with a body the model rejects: ValidationException via the SDK too.
	_, err = e.KMS.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(0)})
	wantCode(t, err, "ValidationException")
	_, err = e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("")})
	wantCode(t, err, "ValidationException")
	var nf *types.NotFoundException
	_, err = e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/none")})
	if !errorsAs(err, &nf) {
		t.Fatalf("got %v", err)
	}
}
