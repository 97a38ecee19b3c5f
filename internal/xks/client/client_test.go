package client_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/client"
	"github.com/keyhold/keyhold/internal/xks/proxy"
	"github.com/keyhold/keyhold/internal/xks/xkstest"
)

var md = client.RequestMetadata{
	AWSPrincipalARN: "arn:aws:iam::111122223333:role/app",
	KMSKeyARN:       "arn:aws:kms:us-east-1:111122223333:key/0b1c2d3e",
	KMSOperation:    "Encrypt",
	KMSRequestID:    "c8c9a0e4-6f3e-4f7e-9c61-1d7b8b7f0a11",
}

// patient is the per-attempt limit of clients whose calls are not meant
// to time out: a busy machine (or the race detector) can take longer than
// KMS's 250 ms for a TLS handshake, which is not what these tests check.
const patient = time.Minute

// fakeClient is a client of the fake with the patient limit; mutate may
// set another (client.DefaultTimeout where a test wants KMS's).
func fakeClient(t *testing.T, p *xkstest.Proxy, mutate func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{Endpoint: p.Endpoint, Path: p.Path, AccessKeyID: p.AccessKeyID,
		SecretAccessKey: p.SecretAccessKey, Region: p.Region, RootCAs: p.RootCAs, Timeout: patient}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestRoundTripAgainstFake(t *testing.T) {
	p := xkstest.New(t, xkstest.Options{CiphertextMetadata: []byte("v=7")})
	c := fakeClient(t, p, nil)
	ctx := context.Background()
	if _, err := c.Health(ctx, md); err != nil {
		t.Fatal(err)
	}
	m, err := c.KeyMetadata(ctx, p.KeyIDs[0], md)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CheckKeyMetadata(m); err != nil {
		t.Fatal(err)
	}
	pt, aad := []byte("data key bytes 0123456789abcdef"), []byte("kms header")
	r, err := c.Encrypt(ctx, p.KeyIDs[0], md, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.CiphertextMetadata) != "v=7" || bytes.Equal(r.Ciphertext, pt) {
		t.Fatalf("encrypt result %+v", r)
	}
	got, err := c.Decrypt(ctx, p.KeyIDs[0], md, r.Ciphertext, r.IV, r.AuthTag, aad, r.CiphertextMetadata)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v", err)
	}
	_, err = c.Decrypt(ctx, p.KeyIDs[0], md, r.Ciphertext, r.IV, r.AuthTag, []byte("other"), r.CiphertextMetadata)
	var pe *client.ProxyError
	if !errors.As(err, &pe) || pe.Name != xks.InvalidCiphertextException || pe.Status != 400 {
		t.Fatalf("decrypt with wrong AAD: %v", err)
	}
}

// TestFaults switches every fault on, checks the classification, switches it
// off and checks the client recovers.
func TestFaults(t *testing.T) {
	p := xkstest.New(t, xkstest.Options{})
	c := fakeClient(t, p, nil)
	// Calls under the Slow fault end only by the client's own limit.
	kmsLimit := fakeClient(t, p, func(c *client.Config) { c.Timeout = client.DefaultTimeout })
	ctx := context.Background()
	tests := []struct {
		name        string
		fault       xkstest.Fault
		errName     string
		wantConn    string
		wantCreate  string
		wantKeyCode string
	}{
		{"slow", xkstest.Slow, "", "XKS_PROXY_TIMED_OUT", "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException"},
		{"5xx", xkstest.ServerError, "", "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyInvalidResponseException"},
		{"garbage", xkstest.Garbage, "", "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyInvalidResponseException"},
		{"wrong secret", xkstest.WrongSecret, "", "INVALID_CREDENTIALS", "XksProxyIncorrectAuthenticationCredentialException", "CustomKeyStoreInvalidStateException"},
		{"refused", xkstest.Refused, "", "XKS_PROXY_NOT_REACHABLE", "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException"},
		{"untrusted cert", xkstest.UntrustedCert, "", "XKS_PROXY_INVALID_TLS_CONFIGURATION", "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException"},
		{"validation", xkstest.ErrorName, xks.ValidationException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException"},
		{"invalid state", xkstest.ErrorName, xks.InvalidStateException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyInvalidConfigurationException"},
		{"key usage", xkstest.ErrorName, xks.InvalidKeyUsageException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyInvalidConfigurationException"},
		{"auth failed", xkstest.ErrorName, xks.AuthenticationFailedException, "INVALID_CREDENTIALS", "XksProxyIncorrectAuthenticationCredentialException", "CustomKeyStoreInvalidStateException"},
		{"access denied", xkstest.ErrorName, xks.AccessDeniedException, "XKS_PROXY_ACCESS_DENIED", "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException"},
		{"key not found", xkstest.ErrorName, xks.KeyNotFoundException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyNotFoundException"},
		{"uri path", xkstest.ErrorName, xks.InvalidUriPathException, "XKS_PROXY_INVALID_CONFIGURATION", "XksProxyInvalidConfigurationException", "CustomKeyStoreInvalidStateException"},
		{"throttling", xkstest.ErrorName, xks.ThrottlingException, "XKS_PROXY_NOT_REACHABLE", "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException"},
		{"unsupported", xkstest.ErrorName, xks.UnsupportedOperationException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "XksKeyInvalidResponseException"},
		{"dependency timeout", xkstest.ErrorName, xks.DependencyTimeoutException, "XKS_PROXY_TIMED_OUT", "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException"},
		{"internal", xkstest.ErrorName, xks.InternalException, "XKS_PROXY_INVALID_RESPONSE", "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p.SetErrorName(tc.errName)
			p.SetFault(tc.fault)
			c.CloseIdleConnections()
			fc := c
			if tc.fault == xkstest.Slow {
				// The fake never answers: returning at all shows the
				// per-attempt limit is enforced.
				fc = kmsLimit
			}
			_, err := fc.Health(ctx, md)
			if err == nil {
				t.Fatal("Health succeeded under a fault")
			}
			if got := client.ConnectionErrorCode(err); got != tc.wantConn {
				t.Errorf("ConnectionErrorCode = %s, want %s (%v)", got, tc.wantConn, err)
			}
			if got := client.CreateStoreError(err); got != tc.wantCreate {
				t.Errorf("CreateStoreError = %s, want %s (%v)", got, tc.wantCreate, err)
			}
			_, kerr := fc.KeyMetadata(ctx, p.KeyIDs[0], md)
			if got := client.CreateKeyError(kerr); got != tc.wantKeyCode {
				t.Errorf("CreateKeyError = %s, want %s (%v)", got, tc.wantKeyCode, kerr)
			}
			if bytes.Contains([]byte(err.Error()), []byte(p.SecretAccessKey)) {
				t.Fatal("error leaks the secret")
			}
			p.SetFault(xkstest.None)
			c.CloseIdleConnections()
			// Recovery may take one more call: a connection the faulty
			// server was still closing can fail once, as on a real network.
			var herr error
			for range 3 {
				if _, herr = c.Health(ctx, md); herr == nil {
					break
				}
			}
			if herr != nil {
				t.Fatalf("no recovery in 3 calls after the fault cleared: %v", herr)
			}
		})
	}
}

func TestSlowRetriesOnce(t *testing.T) {
	p := xkstest.New(t, xkstest.Options{})
	c := fakeClient(t, p, func(c *client.Config) { c.Timeout = client.DefaultTimeout })
	p.SetFault(xkstest.Slow)
	before := p.Calls()
	_, err := c.Health(context.Background(), md)
	if client.ConnectionErrorCode(err) != "XKS_PROXY_TIMED_OUT" {
		t.Fatalf("err = %v", err)
	}
	if n := p.Calls() - before; n != 2 {
		t.Fatalf("%d attempts, want 2 (one retry on timeout)", n)
	}
}

func TestKeyMetadataChecks(t *testing.T) {
	p := xkstest.New(t, xkstest.Options{Keys: []xkstest.Key{
		{ID: "good", Encrypt: true, Decrypt: true},
		{ID: "enc-only", Encrypt: true},
		{ID: "off", Encrypt: true, Decrypt: true, Disabled: true},
	}})
	c := fakeClient(t, p, nil)
	tests := []struct {
		id, want string
	}{
		{"good", ""},
		{"enc-only", "XksKeyInvalidConfigurationException"},
		{"off", "XksKeyInvalidConfigurationException"},
		{"absent", "XksKeyNotFoundException"},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			m, err := c.KeyMetadata(context.Background(), tc.id, md)
			if err == nil {
				err = client.CheckKeyMetadata(m)
			}
			if got := client.CreateKeyError(err); got != tc.want {
				t.Fatalf("CreateKeyError = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	base := client.Config{Endpoint: "https://xks.example.com", Path: "/kms/xks/v1", AccessKeyID: "A", SecretAccessKey: "s", Region: "us-east-1"}
	tests := []struct {
		name   string
		mutate func(*client.Config)
		ok     bool
	}{
		{"ok", func(*client.Config) {}, true},
		{"port allowed", func(c *client.Config) { c.Endpoint = "https://127.0.0.1:8443" }, true},
		{"prefix", func(c *client.Config) { c.Path = "/tenant_1/kms/xks/v1" }, true},
		{"http", func(c *client.Config) { c.Endpoint = "http://xks.example.com" }, false},
		{"endpoint path", func(c *client.Config) { c.Endpoint = "https://xks.example.com/x" }, false},
		{"bad path", func(c *client.Config) { c.Path = "/kms/xks" }, false},
		{"dot path", func(c *client.Config) { c.Path = "/../kms/xks/v1" }, false},
		{"no region", func(c *client.Config) { c.Region = "" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mutate(&cfg)
			_, err := client.New(cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v", err)
			}
			if err != nil && client.ConnectionErrorCode(err) != "XKS_PROXY_INVALID_CONFIGURATION" {
				t.Fatalf("code %s", client.ConnectionErrorCode(err))
			}
		})
	}
	if s := fmt.Sprintf("%v %#v", base, base); bytes.Contains([]byte(s), []byte("SecretAccessKey: \"s\"")) {
		t.Fatal("Config prints its secret")
	}
}

// TestAgainstRealProxy runs the client against keyhold's proxy over
// SoftHSM2 on a real TLS listener.
func TestAgainstRealProxy(t *testing.T) {
	if _, err := os.Stat(proxy.DefaultModule); err != nil {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2 to run this test)")
	}
	res, srv, addr := startRealProxy(t)
	pem, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := client.New(client.Config{Endpoint: "https://" + addr, Path: res.XksProxyUriPath,
		AccessKeyID: res.XksProxyAuthenticationCredential.AccessKeyId, SecretAccessKey: res.XksProxyAuthenticationCredential.RawSecretAccessKey,
		Region: "us-east-1", RootCAs: pool, Timeout: patient})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	hs, err := c.Health(ctx, md)
	if err != nil || hs.EKMFleetDetails[0].HealthStatus != "ACTIVE" {
		t.Fatalf("health %+v %v", hs, err)
	}
	m, err := c.KeyMetadata(ctx, res.XksKeyId, md)
	if err != nil || client.CheckKeyMetadata(m) != nil {
		t.Fatalf("metadata %+v %v", m, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				pt := []byte(fmt.Sprintf("plaintext %d/%d", g, i))
				r, err := c.Encrypt(ctx, res.XksKeyId, md, pt, []byte("aad"))
				if err != nil {
					errs <- err
					return
				}
				got, err := c.Decrypt(ctx, res.XksKeyId, md, r.Ciphertext, r.IV, r.AuthTag, []byte("aad"), r.CiphertextMetadata)
				if err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("decrypt: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, err = c.KeyMetadata(ctx, "no-such-key", md)
	if client.CreateKeyError(err) != "XksKeyNotFoundException" {
		t.Fatalf("unknown key: %v", err)
	}
	// A wrong path prefix is InvalidUriPath -> XksProxyInvalidConfigurationException.
	bad, _ := client.New(client.Config{Endpoint: "https://" + addr, Path: "/wrong/kms/xks/v1",
		AccessKeyID: "A", SecretAccessKey: "s", Region: "us-east-1", RootCAs: pool, Timeout: patient})
	if _, err := bad.Health(ctx, md); client.CreateStoreError(err) != "XksProxyInvalidConfigurationException" {
		t.Fatalf("wrong prefix: %v", err)
	}
	_ = srv
}

var (
	realOnce sync.Once
	realRes  proxy.InitResult
	realSrv  *proxy.Server
	realAddr string
	realErr  error
)

// startRealProxy inits a SoftHSM2-backed proxy once per test binary (one
// SoftHSM2 configuration per process) and serves it on 127.0.0.1.
func startRealProxy(t testing.TB) (proxy.InitResult, *proxy.Server, string) {
	realOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyhold-xks-client-")
		if err != nil {
			realErr = err
			return
		}
		realRes, realErr = proxy.Init(proxy.InitOptions{Dir: filepath.Join(dir, "proxy"), Addr: "127.0.0.1:0", Prefix: "/client-test"})
		if realErr != nil {
			return
		}
		cfg, err := proxy.LoadConfig(realRes.ConfigFile)
		if err != nil {
			realErr = err
			return
		}
		realSrv, realErr = proxy.New(cfg, proxy.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
		if realErr != nil {
			return
		}
		ln, err := realSrv.Listen()
		if err != nil {
			realErr = err
			return
		}
		realAddr = ln.Addr.String()
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realRes, realSrv, realAddr
}

func BenchmarkRealProxyEncrypt(b *testing.B) {
	if _, err := os.Stat(proxy.DefaultModule); err != nil {
		b.Skip("SoftHSM2 not installed")
	}
	res, _, addr := startRealProxy(b)
	pem, _ := os.ReadFile(res.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := client.New(client.Config{Endpoint: "https://" + addr, Path: res.XksProxyUriPath,
		AccessKeyID: res.XksProxyAuthenticationCredential.AccessKeyId, SecretAccessKey: res.XksProxyAuthenticationCredential.RawSecretAccessKey,
		Region: "us-east-1", RootCAs: pool, Timeout: patient})
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 32)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(context.Background(), res.XksKeyId, md, pt, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFakeProxyEncrypt: one client Encrypt against the in-memory fake
// proxy (real TLS, SigV4 and the proxy's handler; no PKCS#11), 16 in
// flight: the client's share of the CPU is what keyhold spends per XKS call.
func BenchmarkFakeProxyEncrypt(b *testing.B) {
	p := xkstest.New(b, xkstest.Options{})
	c, err := client.New(client.Config{Endpoint: p.Endpoint, Path: p.Path, AccessKeyID: p.AccessKeyID,
		SecretAccessKey: p.SecretAccessKey, Region: p.Region, RootCAs: p.RootCAs, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	pt := make([]byte, 60)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encrypt(context.Background(), p.KeyIDs[0], md, pt, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Kept-alive connections: a call on a connection the proxy closed while it
// was idle is sent again on a new one (the proxy sees it once), and an
// answer with "Connection: close" is used and its connection not reused.
func TestKeepAliveConnections(t *testing.T) {
	p := xkstest.New(t, xkstest.Options{})
	c := fakeClient(t, p, nil)
	ctx := context.Background()
	pt := []byte("sixteen byte msg")
	if _, err := c.Encrypt(ctx, p.KeyIDs[0], md, pt, nil); err != nil {
		t.Fatal(err)
	}
	p.SetFault(xkstest.None) // closes every connection, the idle pooled one included
	before := p.Calls()
	if _, err := c.Encrypt(ctx, p.KeyIDs[0], md, pt, nil); err != nil {
		t.Fatalf("call on a connection the proxy closed: %v", err)
	}
	if n := p.Calls() - before; n != 1 {
		t.Fatalf("the proxy saw %d calls, want 1", n)
	}
	p.SetFault(xkstest.CloseAfterAnswer)
	for i := 0; i < 3; i++ {
		if _, err := c.Encrypt(ctx, p.KeyIDs[0], md, pt, nil); err != nil {
			t.Fatalf("call %d with Connection: close: %v", i, err)
		}
	}
}
