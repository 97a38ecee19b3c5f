package integration

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestSecureTransportCondition serves the same instance over HTTPS and plain
// HTTP: a key policy that denies requests without TLS (aws:SecureTransport)
// lets the HTTPS client through and stops the HTTP one.
func TestSecureTransportCondition(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tlsSrv := httptest.NewUnstartedServer(e.Instance.Handler)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	tlsConfig := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig
	overTLS := e.client(t, e.AccessKey, e.Secret, func(o *kms.Options) {
		o.BaseEndpoint = aws.String(tlsSrv.URL)
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = tlsConfig.Clone()
			tr.TLSClientConfig.MinVersion = tls.VersionTLS12
		})
	})
	pol := `{"Version":"2012-10-17","Statement":[
		{"Sid":"root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},
		{"Sid":"tls-only","Effect":"Deny","Principal":"*","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`
	k, err := overTLS.CreateKey(ctx, &kms.CreateKeyInput{Policy: &pol})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := overTLS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("encrypt over TLS: %v", err)
	}
	_, err = e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
	if msg := wantDenied(t, err); msg == "" {
		t.Fatal("no message")
	}
}
