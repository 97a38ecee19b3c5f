package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestNoSecretInLogs runs, at log level debug, the calls whose requests or
// responses carry secrets (data keys, key pairs, random bytes, shared
// secrets, an XKS proxy credential, a new IAM secret key, plaintext in a
// refused request) and a custom key store connection that fails, then
// looks for each secret, raw, base64 and hex, in every log line.
func TestNoSecretInLogs(t *testing.T) {
	// A stand-in XKS proxy: healthy until refuse, then it rejects the
	// credential (keyhold logs the failed connection).
	var refuse atomic.Bool
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if refuse.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errorName":"AuthenticationFailedException"}`)
			return
		}
		io.WriteString(w, `{"xksProxyFleetSize":1,"xksProxyVendor":"test","xksProxyModel":"test","ekmVendor":"test",`+
			`"ekmFleetDetails":[{"id":"hsm-1","model":"test","healthStatus":"ACTIVE"}]}`)
	}))
	defer proxy.Close()
	caFile := filepath.Join(t.TempDir(), "xks-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}), 0o600)
	// A patient XKS limit: the stand-in proxy answers at once, but a busy
	// machine can take longer than KMS's 250 ms for the TLS handshake.
	s := serveInProcess(t, "--log-level", "debug", "--xks-ca-file", caFile, "--xks-timeout", "1m")
	ctx := context.Background()
	var secrets [][]byte
	keep := func(b []byte) { secrets = append(secrets, b) }

	key, err := s.client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("a plaintext nobody may log: 7c1f3e")
	keep(plaintext)
	if _, err := s.client.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: plaintext}); err != nil {
		t.Fatal(err)
	}
	// A refused request still carries its plaintext.
	if _, err := s.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/missing"), Plaintext: plaintext}); err == nil {
		t.Fatal("Encrypt with a missing alias succeeded")
	}
	if _, err := s.client.Encrypt(ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: plaintext,
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256}); err == nil {
		t.Fatal("Encrypt with a wrong algorithm succeeded")
	}
	dk, err := s.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: key.KeyMetadata.KeyId, KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	keep(dk.Plaintext)
	rnd, err := s.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)})
	if err != nil {
		t.Fatal(err)
	}
	keep(rnd.Plaintext)
	pair, err := s.client.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: key.KeyMetadata.KeyId, KeyPairSpec: types.DataKeyPairSpecEccNistP256})
	if err != nil {
		t.Fatal(err)
	}
	keep(pair.PrivateKeyPlaintext)
	agree, err := s.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeKeyAgreement})
	if err != nil {
		t.Fatal(err)
	}
	shared, err := s.client.DeriveSharedSecret(ctx, &kms.DeriveSharedSecretInput{KeyId: agree.KeyMetadata.KeyId,
		KeyAgreementAlgorithm: types.KeyAgreementAlgorithmSpecEcdh, PublicKey: pair.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	keep(shared.SharedSecret)

	// An XKS proxy credential, then a connection attempt that fails (its
	// errors are logged).
	xksSecret := "c2VjcmV0LXhrcy1wcm94eS1jcmVkZW50aWFsLTEyMzQ1Ng=="
	keep([]byte(xksSecret))
	cks, err := s.client.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("xks"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyUriEndpoint: aws.String(proxy.URL), XksProxyUriPath: aws.String("/example/kms/xks/v1"),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String("ABCDEFGHIJKLMNOPQRST"),
			RawSecretAccessKey: aws.String(xksSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	if _, err := s.client.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: cks.CustomKeyStoreId}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := s.client.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: cks.CustomKeyStoreId})
		if err != nil {
			t.Fatal(err)
		}
		if d.CustomKeyStores[0].ConnectionState == types.ConnectionStateTypeFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not fail to connect: %+v", d.CustomKeyStores[0])
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A new IAM secret key.
	ak, sk := readCreds(t, s.dataDir+"/credentials")
	keep([]byte(sk))
	iamc := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, "")})
	if _, err := iamc.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("app")}); err != nil {
		t.Fatal(err)
	}
	created, err := iamc.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("app")})
	if err != nil {
		t.Fatal(err)
	}
	keep([]byte(aws.ToString(created.AccessKey.SecretAccessKey)))

	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	log := s.log.String()
	if !strings.Contains(log, `"operation":"CreateAccessKey"`) || !strings.Contains(log, `"operation":"DeriveSharedSecret"`) {
		t.Fatalf("the log is not the run's:\n%s", log)
	}
	if !strings.Contains(log, `"code":"INVALID_CREDENTIALS"`) {
		t.Fatalf("the failed connection is not in the log:\n%s", log)
	}
	for i, secret := range secrets {
		for _, form := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret)} {
			if len(form) >= 16 && strings.Contains(log, form) {
				t.Errorf("secret %d is in the log", i)
			}
		}
	}
}
