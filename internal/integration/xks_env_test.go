package integration

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// xksTarget is a proxy a keyhold under test can reach: endpoint, path,
// credential, and the certificate(s) keyhold must trust.
type xksTarget struct {
	Endpoint, Path, AccessKeyID, Secret string
}

// trustFile writes PEM certificates for keyhold's --xks-ca-file. Each
// certificate is the proxy's own leaf, pinned as a trust anchor (Go accepts
// a root pool member as a complete chain), so keyhold verifies the proxy's
// certificate and host name for real.
func trustFile(t *testing.T, ders ...[]byte) string {
	t.Helper()
	var b strings.Builder
	for _, d := range ders {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	p := filepath.Join(t.TempDir(), "xks-ca.pem")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// leafOf reads the certificate a TLS server presents. The test only reads
// it to pin it; keyhold itself never skips verification.
func leafOf(t *testing.T, endpoint string) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(endpoint, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// startXKSKeyhold runs keyhold trusting caFile; mods change its
// configuration further.
func startXKSKeyhold(t *testing.T, caFile string, mods ...func(*cli.ServeConfig)) *env {
	t.Helper()
	e := startWith(t, t.TempDir(), func(c *cli.ServeConfig) {
		c.XKSCAFile = caFile
		if testing.Verbose() {
			c.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
		for _, m := range mods {
			m(c)
		}
	})
	return e
}

func (e *env) createXKS(ctx context.Context, name string, p xksTarget, mod ...func(*kms.CreateCustomKeyStoreInput)) (string, error) {
	in := &kms.CreateCustomKeyStoreInput{
		CustomKeyStoreName:   aws.String(name),
		CustomKeyStoreType:   types.CustomKeyStoreTypeExternalKeyStore,
		XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyUriEndpoint:  aws.String(p.Endpoint),
		XksProxyUriPath:      aws.String(p.Path),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{
			AccessKeyId: aws.String(p.AccessKeyID), RawSecretAccessKey: aws.String(p.Secret)},
	}
	for _, m := range mod {
		m(in)
	}
	out, err := e.KMS.CreateCustomKeyStore(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.CustomKeyStoreId), nil
}

func (e *env) describeStore(t *testing.T, id string) types.CustomKeyStoresListEntry {
	t.Helper()
	out, err := e.KMS.DescribeCustomKeyStores(context.Background(), &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return out.CustomKeyStores[0]
}

// connectAndWait connects and polls until the store leaves CONNECTING;
// it returns the final state and error code.
func (e *env) connectAndWait(t *testing.T, id string) (types.ConnectionStateType, types.ConnectionErrorCodeType) {
	t.Helper()
	if _, err := e.KMS.ConnectCustomKeyStore(context.Background(), &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatalf("ConnectCustomKeyStore: %v", err)
	}
	var s types.CustomKeyStoresListEntry
	eventually(t, "store "+id+" to leave CONNECTING", func() (bool, error) {
		s = e.describeStore(t, id)
		return s.ConnectionState != types.ConnectionStateTypeConnecting, nil
	})
	return s.ConnectionState, s.ConnectionErrorCode
}

func (e *env) mustConnect(t *testing.T, id string) {
	t.Helper()
	if st, code := e.connectAndWait(t, id); st != types.ConnectionStateTypeConnected {
		t.Fatalf("connect %s: %s %s", id, st, code)
	}
}

func (e *env) disconnect(t *testing.T, id string) {
	t.Helper()
	if _, err := e.KMS.DisconnectCustomKeyStore(context.Background(), &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatalf("DisconnectCustomKeyStore: %v", err)
	}
}

func (e *env) createXKSKey(ctx context.Context, storeID, xksKeyID string) (*types.KeyMetadata, error) {
	out, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore,
		CustomKeyStoreId: aws.String(storeID), XksKeyId: aws.String(xksKeyID), Description: aws.String("xks test key")})
	if err != nil {
		return nil, err
	}
	return out.KeyMetadata, nil
}

// recProxy is keyhold's real XKS proxy handler over Go AES-GCM keys, on an
// httptest TLS server, recording the requestMetadata of every call from
// its access log. It serves two prefixes and two credentials per prefix.
type recProxy struct {
	xksTarget
	Spare      xksTarget // same proxy, the second credential
	Path2      string    // a second prefix on the same endpoint
	Target2    xksTarget // the second prefix with its own credential
	Leaf       []byte
	srv        *proxy.Server
	cfg        proxy.Config
	ts         *httptest.Server
	mu         sync.Mutex
	records    []map[string]string
	backendsMu sync.Mutex
}

func randomCredential() (string, string) {
	b := make([]byte, 15)
	rand.Read(b)
	s := make([]byte, 32)
	rand.Read(s)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b), base64.StdEncoding.EncodeToString(s)
}

func newRecProxy(t *testing.T, keys ...string) *recProxy {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{"rec-key-1", "rec-key-2"}
	}
	p := &recProxy{}
	ak1, sk1 := randomCredential()
	ak2, sk2 := randomCredential()
	ak3, sk3 := randomCredential()
	mk := func(prefix string, creds ...proxy.Credential) proxy.StoreConfig {
		sc := proxy.StoreConfig{URIPathPrefix: prefix, Credentials: creds,
			PKCS11:         proxy.PKCS11Config{Module: "in-memory", TokenLabel: "rec"},
			HealthKeyLabel: "health"}
		for _, k := range keys {
			sc.Keys = append(sc.Keys, proxy.KeyConfig{ID: k})
		}
		return sc
	}
	p.cfg = proxy.Config{Listen: "127.0.0.1:0", Region: "us-east-1", HealthCacheTTL: proxy.Duration(time.Nanosecond),
		KeyStores: []proxy.StoreConfig{
			mk("/rec", proxy.Credential{AccessKeyID: ak1, SecretAccessKey: sk1}, proxy.Credential{AccessKeyID: ak2, SecretAccessKey: sk2}),
			mk("/rec2", proxy.Credential{AccessKeyID: ak3, SecretAccessKey: sk3})}}
	var err error
	p.srv, err = proxy.New(p.cfg, proxy.WithBackend("/rec", newMemBackend(append(keys, "health"))),
		proxy.WithBackend("/rec2", newMemBackend(append(keys, "health"))),
		proxy.WithLogger(slog.New(recordHandler{p})))
	if err != nil {
		t.Fatal(err)
	}
	p.ts = httptest.NewUnstartedServer(p.srv.Handler())
	p.ts.StartTLS()
	t.Cleanup(func() { p.ts.Close(); p.srv.Close() })
	p.Leaf = p.ts.Certificate().Raw
	p.xksTarget = xksTarget{Endpoint: p.ts.URL, Path: "/rec" + xks.PathSuffix, AccessKeyID: ak1, Secret: sk1}
	p.Spare = xksTarget{Endpoint: p.ts.URL, Path: p.Path, AccessKeyID: ak2, Secret: sk2}
	p.Path2 = "/rec2" + xks.PathSuffix
	p.Target2 = xksTarget{Endpoint: p.ts.URL, Path: p.Path2, AccessKeyID: ak3, Secret: sk3}
	return p
}

// keepOnly makes the proxy's /rec prefix accept only the credential akid.
func (p *recProxy) keepOnly(t *testing.T, akid string) {
	t.Helper()
	cfg := p.cfg
	cfg.KeyStores = nil
	for _, sc := range p.cfg.KeyStores {
		if sc.URIPathPrefix != "/rec" {
			cfg.KeyStores = append(cfg.KeyStores, sc)
			continue
		}
		var keep []proxy.Credential
		for _, c := range sc.Credentials {
			if c.AccessKeyID == akid {
				keep = append(keep, c)
			}
		}
		sc.Credentials = keep
		cfg.KeyStores = append(cfg.KeyStores, sc)
	}
	if err := p.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}

func (p *recProxy) calls() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]string(nil), p.records...)
}

// recordHandler keeps the proxy's access log lines as maps.
type recordHandler struct{ p *recProxy }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recordHandler) WithGroup(string) slog.Handler            { return h }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	if m["api"] == "" {
		return nil
	}
	h.p.mu.Lock()
	h.p.records = append(h.p.records, m)
	h.p.mu.Unlock()
	return nil
}

// memBackend is a proxy.Backend over Go AES-256-GCM keys.
type memBackend struct{ keys map[string]cipher.AEAD }

func newMemBackend(labels []string) *memBackend {
	b := &memBackend{keys: map[string]cipher.AEAD{}}
	for _, l := range labels {
		k := make([]byte, 32)
		rand.Read(k)
		blk, _ := aes.NewCipher(k)
		b.keys[l], _ = cipher.NewGCM(blk)
	}
	return b
}

func (b *memBackend) get(label string) (cipher.AEAD, error) {
	a, ok := b.keys[label]
	if !ok {
		return nil, fmt.Errorf("memBackend %q: %w", label, proxy.ErrKeyNotFound)
	}
	return a, nil
}

func (b *memBackend) Key(_ context.Context, label string) (proxy.KeyInfo, error) {
	if _, err := b.get(label); err != nil {
		return proxy.KeyInfo{}, err
	}
	return proxy.KeyInfo{Spec: xks.KeySpecAES256, Usage: []string{xks.UsageEncrypt, xks.UsageDecrypt}, CanEncrypt: true, CanDecrypt: true}, nil
}

func (b *memBackend) Encrypt(_ context.Context, label string, iv, aad, pt []byte) ([]byte, []byte, error) {
	a, err := b.get(label)
	if err != nil {
		return nil, nil, err
	}
	return a.Seal(nil, iv, pt, aad), iv, nil
}

func (b *memBackend) Decrypt(_ context.Context, label string, iv, aad, ct []byte) ([]byte, error) {
	a, err := b.get(label)
	if err != nil {
		return nil, err
	}
	if len(iv) != a.NonceSize() {
		return nil, proxy.ErrDecrypt
	}
	pt, err := a.Open(nil, iv, ct, aad)
	if err != nil {
		return nil, proxy.ErrDecrypt
	}
	return pt, nil
}

func (b *memBackend) EKM(context.Context) (proxy.EKMInfo, error) {
	return proxy.EKMInfo{Vendor: "keyhold test", Model: "in-memory", ID: "mem-1"}, nil
}

func (b *memBackend) Close() error { return nil }
