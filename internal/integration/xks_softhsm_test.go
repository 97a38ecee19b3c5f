package integration

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// TestXKSRealProxy is the happy path against keyhold's own XKS proxy over
// a SoftHSM2 token: create, connect, key, every crypto operation, and
// credential rotation to the proxy's second credential while connected.
func TestXKSRealProxy(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(proxy.DefaultModule); err != nil {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2 to run the real XKS proxy test); skipping")
	}
	useInProcessSoftHSM(t)
	ctx := context.Background()
	res, err := proxy.Init(proxy.InitOptions{Dir: t.TempDir(), Addr: "127.0.0.1:0", Prefix: "/example"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen()
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Shutdown(context.Background())
		srv.Close()
	})
	e := startXKSKeyhold(t, res.CAFile)
	cred := res.XksProxyAuthenticationCredential
	spare := cfg.KeyStores[0].Credentials[1]
	target := xksTarget{Endpoint: "https://" + ln.Addr.String(), Path: res.XksProxyUriPath, AccessKeyID: cred.AccessKeyId, Secret: cred.RawSecretAccessKey}

	id, err := e.createXKS(ctx, "ExamplePublicEndpointXKS", target)
	if err != nil {
		t.Fatal(err)
	}
	e.mustConnect(t, id)
	k, err := e.createXKSKey(ctx, id, res.XksKeyId)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(k.XksKeyConfiguration.Id) != res.XksKeyId || k.Origin != types.OriginTypeExternalKeyStore {
		t.Fatalf("key: %+v", k)
	}
	ec := map[string]string{"app": "keyhold"}
	pt := bytes.Repeat([]byte{0xA5}, 4096) // KMS's maximum plaintext: 4124 bytes reach the proxy
	enc, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.Arn, Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		dec, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
		if err != nil || !bytes.Equal(dec.Plaintext, pt) || aws.ToString(dec.KeyId) != aws.ToString(k.Arn) {
			t.Fatalf("%s: decrypt: %v", what, err)
		}
	}
	check("first")
	gdk, err := e.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.KeyId, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	re, err := e.KMS.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: k.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, KeyId: k.Arn})
	if err != nil || !bytes.Equal(dk.Plaintext, gdk.Plaintext) {
		t.Fatalf("data key after ReEncrypt: %v", err)
	}
	_, err = e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantErr[*types.InvalidCiphertextException](t, err)

	// Rotate to the proxy's second credential while connected.
	if _, err := e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{
			AccessKeyId: aws.String(spare.AccessKeyID), RawSecretAccessKey: aws.String(spare.SecretAccessKey)}}); err != nil {
		t.Fatal(err)
	}
	check("after rotation")
	// Retire the first credential at the proxy: keyhold no longer uses it.
	cfg.KeyStores[0].Credentials = cfg.KeyStores[0].Credentials[1:]
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	check("after retiring the old credential")
	if s := e.describeStore(t, id); aws.ToString(s.XksProxyConfiguration.AccessKeyId) != spare.AccessKeyID {
		t.Fatalf("describe after rotation: %+v", s.XksProxyConfiguration)
	}
}
