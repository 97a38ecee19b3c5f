package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/sigv4"
)

// TestForgeriesRefused replays issue 14's forgeries against a running
// server: each is refused with AWS's error, and the key they aim at is
// still enabled afterwards.
func TestForgeriesRefused(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	ck, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(ck.KeyMetadata.KeyId)
	other, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	otherID := aws.ToString(other.KeyMetadata.KeyId)
	signer := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	send := func(t *testing.T, prepare func(r *http.Request), sign func(r *http.Request), sentBody string) (int, map[string]string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(sentBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		prepare(req)
		sign(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Length") == "" {
			t.Error("answer without Content-Length")
		}
		var m map[string]string
		json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	body := `{"KeyId":"` + keyID + `"}`
	const mismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	cases := []struct {
		name     string
		prepare  func(r *http.Request)
		sign     func(r *http.Request)
		sentBody string
		msg      string
	}{
		{name: "X-Amz-Target left out of SignedHeaders, then changed",
			prepare: func(r *http.Request) {},
			sign: func(r *http.Request) {
				signer.Sign(r, []byte(body)) // signs content-type;host;x-amz-date
				r.Header.Set("X-Amz-Target", "TrentService.DisableKey")
			},
			msg: "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization."},
		{name: "UNSIGNED-PAYLOAD",
			prepare: func(r *http.Request) {
				r.Header.Set("X-Amz-Target", "TrentService.DisableKey")
				r.Header.Set("X-Amz-Content-Sha256", sigv4.UnsignedPayload)
			},
			sign: func(r *http.Request) { signer.Sign(r, nil) },
			msg:  mismatch},
		{name: "body swapped under the signature",
			prepare: func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.DisableKey") },
			sign: func(r *http.Request) {
				signer.Sign(r, []byte(`{"KeyId":"`+otherID+`"}`))
			},
			msg: mismatch},
		{name: "body swapped under a signed body hash",
			prepare: func(r *http.Request) {
				r.Header.Set("X-Amz-Target", "TrentService.DisableKey")
				r.Header.Set("X-Amz-Content-Sha256", "")
			},
			sign: func(r *http.Request) {
				signer.Sign(r, []byte(`{"KeyId":"`+otherID+`"}`))
			},
			msg: "The provided 'x-amz-content-sha256' header does not match what was computed."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, m := send(t, tc.prepare, tc.sign, body)
			if st != 400 || m["__type"] != "InvalidSignatureException" || m["message"] != tc.msg {
				t.Fatalf("got %d %v, want 400 InvalidSignatureException %q", st, m, tc.msg)
			}
		})
	}
	for _, id := range []string{keyID, otherID} {
		d, err := e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if d.KeyMetadata.KeyState != types.KeyStateEnabled {
			t.Fatalf("key %s is %s after the forgeries", id, d.KeyMetadata.KeyState)
		}
	}
	// The same request, signed properly, does what it says.
	st, m := send(t, func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.DisableKey") },
		func(r *http.Request) { signer.Sign(r, []byte(body)) }, body)
	if st != 200 {
		t.Fatalf("properly signed DisableKey: %d %v", st, m)
	}
}

// TestBodyLimitFromModel: an operation's body limit comes from its input
// shape, and a body past it is refused from its Content-Length, before it
// is read or authenticated.
func TestBodyLimitFromModel(t *testing.T) {
	e := start(t)
	big := `{"Limit":1,"Marker":"` + strings.Repeat("m", 9000) + `"}` // ListKeys: 8 KiB limit
	req, _ := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get("x-amzn-ErrorType") != "RequestEntityTooLargeException" {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
	}
	// The same size is fine for an operation whose model allows it.
	pol := `{"Version":"2012-10-17","Statement":[{"Sid":"` + strings.Repeat("a", 9000) + `","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"}]}`
	if _, err := e.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{Policy: aws.String(pol)}); err != nil {
		t.Fatalf("CreateKey with a 9 KB policy: %v", err)
	}
}
