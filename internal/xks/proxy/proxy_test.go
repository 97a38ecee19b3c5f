package proxy

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/pkcs11"
	"github.com/keyhold/keyhold/internal/sigv4"
	"github.com/keyhold/keyhold/internal/xks"
)

// One SoftHSM2 token directory for the whole test binary (C_Initialize reads
// SOFTHSM2_CONF once per process): made by Init in TestMain.
var (
	skipReason string
	initRes    InitResult
	baseCfg    Config
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := os.Stat(DefaultModule); err != nil {
		skipReason = "SoftHSM2 not installed (apt-get install softhsm2 to run the XKS proxy tests)"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keyhold-xks-proxy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	initRes, err = Init(InitOptions{Dir: dir, Addr: "127.0.0.1:0", Prefix: "/example"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 1
	}
	baseCfg, err = LoadConfig(initRes.ConfigFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	if err := addUsageKeys(baseCfg.KeyStores[0].PKCS11); err != nil {
		fmt.Fprintln(os.Stderr, "usage keys:", err)
		return 1
	}
	return m.Run()
}

// addUsageKeys creates keys with restricted usage in the init token.
func addUsageKeys(p PKCS11Config) error {
	mod, err := pkcs11.Open(p.Module)
	if err != nil {
		return err
	}
	defer mod.Close()
	slot, err := mod.FindToken(p.TokenLabel)
	if err != nil {
		return err
	}
	s, err := mod.OpenSession(slot, pkcs11.User, p.UserPIN)
	if err != nil {
		return err
	}
	defer s.Close()
	for label, u := range map[string]pkcs11.KeyUsage{
		"enc-only": {Encrypt: true}, "dec-only": {Decrypt: true}, "no-usage": {},
	} {
		if _, err := s.GenerateAESKey(label, nil, u, true); err != nil {
			return err
		}
	}
	return nil
}

// testConfig is the init config with extra keys and a second key store
// served by a Go backend under /fake, and an empty-prefix store.
func testConfig(t testing.TB) Config {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	cfg := baseCfg
	cfg.KeyStores = nil
	main := baseCfg.KeyStores[0]
	main.Keys = []KeyConfig{
		{ID: ExampleKeyLabel},
		{ID: "with-md", Label: ExampleKeyLabel, CiphertextMetadata: base64.StdEncoding.EncodeToString([]byte("key_version=1"))},
		{ID: "enc-only"}, {ID: "dec-only"}, {ID: "no-usage"},
		{ID: "missing-in-token", Label: "no-such-label"},
		{ID: "disabled-key", Label: ExampleKeyLabel, Disabled: true},
	}
	fake := StoreConfig{
		URIPathPrefix:  "/fake",
		Credentials:    []Credential{newCredential()},
		PKCS11:         PKCS11Config{Module: "fake", TokenLabel: "fake"},
		HealthKeyLabel: "health",
		Keys:           []KeyConfig{{ID: "k1"}},
	}
	empty := main
	empty.URIPathPrefix = ""
	empty.Credentials = []Credential{newCredential()}
	empty.Keys = []KeyConfig{{ID: ExampleKeyLabel}}
	cfg.KeyStores = []StoreConfig{main, fake, empty}
	return cfg
}

// goBackend is an in-memory AES-GCM Backend with switchable faults.
type goBackend struct {
	aead  cipher.AEAD
	delay atomic.Int64 // nanoseconds
	fail  atomic.Bool
}

func newGoBackend() *goBackend {
	blk, _ := aes.NewCipher(make([]byte, 32))
	a, _ := cipher.NewGCM(blk)
	return &goBackend{aead: a}
}

func (b *goBackend) wait() error {
	time.Sleep(time.Duration(b.delay.Load()))
	if b.fail.Load() {
		return errors.New("device exploded")
	}
	return nil
}
func (b *goBackend) Key(context.Context, string) (KeyInfo, error) {
	return KeyInfo{Spec: "AES_256", Usage: []string{"ENCRYPT", "DECRYPT"}, CanEncrypt: true, CanDecrypt: true}, b.wait()
}
func (b *goBackend) Encrypt(_ context.Context, _ string, iv, aad, pt []byte) ([]byte, []byte, error) {
	return b.aead.Seal(nil, iv, pt, aad), iv, b.wait()
}
func (b *goBackend) Decrypt(_ context.Context, _ string, iv, aad, ct []byte) ([]byte, error) {
	pt, err := b.aead.Open(nil, iv, ct, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, b.wait()
}
func (b *goBackend) EKM(context.Context) (EKMInfo, error) {
	return EKMInfo{Vendor: "go", Model: "aes", ID: "go-1"}, b.wait()
}
func (b *goBackend) Close() error { return nil }

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

type harness struct {
	srv  *Server
	fake *goBackend
	cfg  Config
	logs *logBuffer
	now  atomic.Pointer[time.Time]
}

func newHarness(t testing.TB, mutate func(*Config)) *harness {
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	h := &harness{fake: newGoBackend(), cfg: cfg, logs: &logBuffer{}}
	now := time.Now()
	h.now.Store(&now)
	var sink io.Writer = h.logs
	if _, bench := t.(*testing.B); bench {
		sink = io.Discard
	}
	srv, err := New(cfg, WithBackend("/fake", h.fake),
		WithLogger(slog.New(slog.NewJSONHandler(sink, nil))),
		WithClock(func() time.Time { return *h.now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h.srv = srv
	return h
}

func (h *harness) store(prefix string) StoreConfig {
	for _, s := range h.cfg.KeyStores {
		if s.URIPathPrefix == prefix {
			return s
		}
	}
	panic("no store " + prefix)
}

type call struct {
	method, path string
	body         any
	cred         Credential
	region       string
	service      string
	signTime     time.Time
	unsigned     bool
}

func (h *harness) do(t testing.TB, c call) (int, []byte) {
	t.Helper()
	var body []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	default:
		body, _ = json.Marshal(b)
	}
	if c.method == "" {
		c.method = http.MethodPost
	}
	r := httptest.NewRequest(c.method, "https://127.0.0.1:8443"+c.path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if !c.unsigned {
		if c.region == "" {
			c.region = h.cfg.Region
		}
		if c.service == "" {
			c.service = xks.Service
		}
		when := *h.now.Load()
		if !c.signTime.IsZero() {
			when = c.signTime
		}
		sg := sigv4.Signer{AccessKeyID: c.cred.AccessKeyID, SecretAccessKey: c.cred.SecretAccessKey,
			Region: c.region, Service: c.service, Now: func() time.Time { return when }}
		if err := sg.Sign(r, body); err != nil {
			t.Fatal(err)
		}
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

func md(op string) *xks.RequestMetadata {
	return &xks.RequestMetadata{
		AWSPrincipalARN: "arn:aws:iam::111122223333:user/alice",
		KMSKeyARN:       "arn:aws:kms:us-east-1:111122223333:key/1234abcd",
		KMSOperation:    op, KMSRequestID: "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
	}
}

func encReq(pt, aad []byte) xks.EncryptRequest {
	return xks.EncryptRequest{RequestMetadata: md("Encrypt"), Plaintext: pt, EncryptionAlgorithm: "AES_GCM",
		AdditionalAuthenticatedData: aad, CiphertextDataIntegrityValueAlgorithm: "SHA_256"}
}

func decReq(e xks.EncryptResponse, aad []byte) xks.DecryptRequest {
	return xks.DecryptRequest{RequestMetadata: md("Decrypt"), Ciphertext: e.Ciphertext, CiphertextMetadata: e.CiphertextMetadata,
		EncryptionAlgorithm: "AES_GCM", AdditionalAuthenticatedData: aad, InitializationVector: e.InitializationVector,
		AuthenticationTag: e.AuthenticationTag}
}

func errorName(t testing.TB, body []byte) string {
	t.Helper()
	var e xks.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if bytes.Count(bytes.TrimSpace(body), []byte("\n")) != 0 {
		t.Fatalf("error body is not one line: %q", body)
	}
	return e.ErrorName
}

const ex = "/example/kms/xks/v1"

func TestEncryptDecryptRoundTrip(t *testing.T) {
	h := newHarness(t, nil)
	cred := h.store("/example").Credentials[0]
	tests := []struct {
		name, keyID string
		ptLen       int
		aad         []byte
		wantMD      string
	}{
		{"plain", ExampleKeyLabel, 32, nil, ""},
		{"aad", ExampleKeyLabel, 64, []byte("project=nile"), ""},
		{"metadata", "with-md", 32, []byte("x"), "key_version=1"},
		{"max sizes", ExampleKeyLabel, 4300, bytes.Repeat([]byte("a"), 8192), ""},
		{"empty plaintext", ExampleKeyLabel, 0, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt := randomBytes(tc.ptLen)
			code, body := h.do(t, call{path: ex + "/keys/" + tc.keyID + "/encrypt", body: encReq(pt, tc.aad), cred: cred})
			if code != 200 {
				t.Fatalf("encrypt: %d %s", code, body)
			}
			var e xks.EncryptResponse
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			if len(e.Ciphertext) != len(pt) || len(e.AuthenticationTag) != 16 || len(e.InitializationVector) != 12 {
				t.Fatalf("bad shapes: ct %d tag %d iv %d", len(e.Ciphertext), len(e.AuthenticationTag), len(e.InitializationVector))
			}
			if string(e.CiphertextMetadata) != tc.wantMD {
				t.Fatalf("ciphertextMetadata %q, want %q", e.CiphertextMetadata, tc.wantMD)
			}
			if want := xks.CDIV(tc.aad, e.CiphertextMetadata, e.InitializationVector, e.Ciphertext, e.AuthenticationTag); e.CiphertextDataIntegrityValue != want {
				t.Fatalf("CDIV %s, want %s", e.CiphertextDataIntegrityValue, want)
			}
			code, body = h.do(t, call{path: ex + "/keys/" + tc.keyID + "/decrypt", body: decReq(e, tc.aad), cred: cred})
			if code != 200 {
				t.Fatalf("decrypt: %d %s", code, body)
			}
			var d xks.DecryptResponse
			json.Unmarshal(body, &d)
			if !bytes.Equal(d.Plaintext, pt) {
				t.Fatal("round trip changed the plaintext")
			}
		})
	}
	if strings.Contains(h.logs.String(), "project=nile") {
		t.Fatal("the access log contains AAD")
	}
	if !strings.Contains(h.logs.String(), `"kmsRequestId":"4112f4d6-db54-4af4-ae30-c55a22a8dfae"`) {
		t.Fatalf("the access log lacks kmsRequestId: %s", h.logs.String())
	}
}

func TestErrorTable(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.KeyStores[1].Keys = append(c.KeyStores[1].Keys, KeyConfig{ID: "k2"})
		c.HSMTimeout = Duration(100 * time.Millisecond)
	})
	cred := h.store("/example").Credentials[0]
	fakeCred := h.store("/fake").Credentials[0]
	// A valid ciphertext to tamper with.
	code, body := h.do(t, call{path: ex + "/keys/with-md/encrypt", body: encReq([]byte("secret"), []byte("ctx")), cred: cred})
	if code != 200 {
		t.Fatalf("setup encrypt: %d %s", code, body)
	}
	var good xks.EncryptResponse
	json.Unmarshal(body, &good)
	tampered := func(f func(*xks.DecryptRequest)) xks.DecryptRequest {
		d := decReq(good, []byte("ctx"))
		d.Ciphertext = append([]byte(nil), d.Ciphertext...)
		f(&d)
		return d
	}
	bigAAD := encReq([]byte("x"), make([]byte, 8193))
	tests := []struct {
		name     string
		c        call
		status   int
		errName  string
		setup    func()
		teardown func()
	}{
		{"unknown prefix", call{path: "/nope/kms/xks/v1/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, cred: cred}, 404, xks.InvalidUriPathException, nil, nil},
		{"unknown api", call{path: ex + "/keys/" + ExampleKeyLabel + "/sign", body: "{}", cred: cred}, 404, xks.InvalidUriPathException, nil, nil},
		{"dot segments not cleaned", call{path: ex + "/keys/../health", body: "{}", cred: cred}, 404, xks.InvalidUriPathException, nil, nil},
		{"double slash not cleaned", call{path: "/example//kms/xks/v1/health", body: "{}", cred: cred}, 404, xks.InvalidUriPathException, nil, nil},
		{"bad key id chars", call{path: ex + "/keys/a%20b/metadata", body: "{}", cred: cred}, 404, xks.InvalidUriPathException, nil, nil},
		{"no signature", call{path: ex + "/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, unsigned: true}, 401, xks.AuthenticationFailedException, nil, nil},
		{"wrong secret", call{path: ex + "/health", body: "{}", cred: Credential{AccessKeyID: cred.AccessKeyID, SecretAccessKey: fakeCred.SecretAccessKey}}, 401, xks.AuthenticationFailedException, nil, nil},
		{"unknown access key", call{path: ex + "/health", body: "{}", cred: newCredential()}, 401, xks.AuthenticationFailedException, nil, nil},
		{"other prefix's key", call{path: ex + "/health", body: "{}", cred: fakeCred}, 401, xks.AuthenticationFailedException, nil, nil},
		{"wrong region", call{path: ex + "/health", body: "{}", cred: cred, region: "eu-west-1"}, 401, xks.AuthenticationFailedException, nil, nil},
		{"wrong service", call{path: ex + "/health", body: "{}", cred: cred, service: "kms"}, 401, xks.AuthenticationFailedException, nil, nil},
		{"skew 6m past", call{path: ex + "/health", body: "{}", cred: cred, signTime: time.Now().Add(-6 * time.Minute)}, 401, xks.AuthenticationFailedException, nil, nil},
		{"skew 6m future", call{path: ex + "/health", body: "{}", cred: cred, signTime: time.Now().Add(6 * time.Minute)}, 401, xks.AuthenticationFailedException, nil, nil},
		{"not json", call{path: ex + "/health", body: "{", cred: cred}, 400, xks.ValidationException, nil, nil},
		{"health without metadata", call{path: ex + "/health", body: "{}", cred: cred}, 400, xks.ValidationException, nil, nil},
		{"health empty metadata", call{path: ex + "/health", body: `{"requestMetadata":{}}`, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"metadata without principal", call{path: ex + "/keys/" + ExampleKeyLabel + "/metadata", body: xks.MetadataRequest{RequestMetadata: &xks.RequestMetadata{KMSOperation: "CreateKey", KMSRequestID: "r"}}, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"encrypt without key arn", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: xks.EncryptRequest{RequestMetadata: &xks.RequestMetadata{AWSPrincipalARN: "p", KMSOperation: "Encrypt", KMSRequestID: "r"}, Plaintext: []byte("x"), EncryptionAlgorithm: "AES_GCM"}, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"encrypt missing plaintext", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: xks.EncryptRequest{RequestMetadata: md("Encrypt"), EncryptionAlgorithm: "AES_GCM"}, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"encrypt wrong algorithm", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: xks.EncryptRequest{RequestMetadata: md("Encrypt"), Plaintext: []byte("x"), EncryptionAlgorithm: "AES_CBC"}, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"encrypt bad base64", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: `{"requestMetadata":{"awsPrincipalArn":"p","kmsKeyArn":"k","kmsOperation":"Encrypt","kmsRequestId":"r"},"plaintext":"!!","encryptionAlgorithm":"AES_GCM"}`, cred: cred}, 400, xks.ValidationException, nil, nil},
		{"decrypt short iv", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.InitializationVector = d.InitializationVector[:8] }), cred: cred}, 400, xks.ValidationException, nil, nil},
		{"decrypt short tag", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.AuthenticationTag = d.AuthenticationTag[:12] }), cred: cred}, 400, xks.ValidationException, nil, nil},
		{"decrypt long metadata", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.CiphertextMetadata = make([]byte, 21) }), cred: cred}, 400, xks.ValidationException, nil, nil},
		{"tampered ciphertext", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.Ciphertext[0] ^= 1 }), cred: cred}, 400, xks.InvalidCiphertextException, nil, nil},
		{"tampered metadata", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.CiphertextMetadata = []byte("key_version=2") }), cred: cred}, 400, xks.InvalidCiphertextException, nil, nil},
		{"dropped metadata", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.CiphertextMetadata = nil }), cred: cred}, 400, xks.InvalidCiphertextException, nil, nil},
		{"wrong aad", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.AdditionalAuthenticatedData = []byte("ctX") }), cred: cred}, 400, xks.InvalidCiphertextException, nil, nil},
		{"wrong iv", call{path: ex + "/keys/with-md/decrypt", body: tampered(func(d *xks.DecryptRequest) { d.InitializationVector = make([]byte, 12) }), cred: cred}, 400, xks.InvalidCiphertextException, nil, nil},
		{"encrypt-only key decrypt", call{path: ex + "/keys/enc-only/decrypt", body: tampered(func(*xks.DecryptRequest) {}), cred: cred}, 400, xks.InvalidKeyUsageException, nil, nil},
		{"decrypt-only key encrypt", call{path: ex + "/keys/dec-only/encrypt", body: encReq([]byte("x"), nil), cred: cred}, 400, xks.InvalidKeyUsageException, nil, nil},
		{"no-usage key encrypt", call{path: ex + "/keys/no-usage/encrypt", body: encReq([]byte("x"), nil), cred: cred}, 400, xks.InvalidKeyUsageException, nil, nil},
		{"no-usage key decrypt", call{path: ex + "/keys/no-usage/decrypt", body: tampered(func(*xks.DecryptRequest) {}), cred: cred}, 400, xks.InvalidKeyUsageException, nil, nil},
		{"disabled key", call{path: ex + "/keys/disabled-key/encrypt", body: encReq([]byte("x"), nil), cred: cred}, 400, xks.InvalidStateException, nil, nil},
		{"unknown key id", call{path: ex + "/keys/nobody/metadata", body: xks.MetadataRequest{RequestMetadata: md("CreateKey")}, cred: cred}, 404, xks.KeyNotFoundException, nil, nil},
		{"key id not in token", call{path: ex + "/keys/missing-in-token/encrypt", body: encReq([]byte("x"), nil), cred: cred}, 404, xks.KeyNotFoundException, nil, nil},
		{"plaintext too large", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: encReq(make([]byte, 4301), nil), cred: cred}, 501, xks.UnsupportedOperationException, nil, nil},
		{"aad too large", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: bigAAD, cred: cred}, 501, xks.UnsupportedOperationException, nil, nil},
		{"body far too large", call{path: ex + "/keys/" + ExampleKeyLabel + "/encrypt", body: encReq(make([]byte, 100000), nil), cred: cred}, 501, xks.UnsupportedOperationException, nil, nil},
		{"hsm timeout", call{path: "/fake/kms/xks/v1/keys/k1/encrypt", body: encReq([]byte("x"), nil), cred: fakeCred}, 503, xks.DependencyTimeoutException,
			func() { h.fake.delay.Store(int64(300 * time.Millisecond)) }, func() { h.fake.delay.Store(0) }},
		{"hsm failure", call{path: "/fake/kms/xks/v1/keys/k1/encrypt", body: encReq([]byte("x"), nil), cred: fakeCred}, 500, xks.InternalException,
			func() { h.fake.fail.Store(true) }, func() { h.fake.fail.Store(false) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
				t.Cleanup(tc.teardown)
			}
			code, body := h.do(t, tc.c)
			if code != tc.status {
				t.Fatalf("status %d, want %d (%s)", code, tc.status, body)
			}
			if got := errorName(t, body); got != tc.errName {
				t.Fatalf("errorName %s, want %s", got, tc.errName)
			}
		})
	}
	if strings.Contains(h.logs.String(), "secret") {
		t.Fatal("log contains plaintext")
	}
}

func TestDisabledStoreAndThrottling(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.KeyStores[1].Disabled = true
		c.KeyStores[2].MaxRequestsPerSecond = 2
	})
	fakeCred := h.store("/fake").Credentials[0]
	code, body := h.do(t, call{path: "/fake/kms/xks/v1/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, cred: fakeCred})
	if code != 400 || errorName(t, body) != xks.InvalidStateException {
		t.Fatalf("disabled store health: %d %s", code, body)
	}
	emptyCred := h.store("").Credentials[0]
	var codes []int
	for range 4 {
		code, _ := h.do(t, call{path: "/kms/xks/v1/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, cred: emptyCred})
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[200 200 429 429]" {
		t.Fatalf("codes with quota 2/s at a frozen clock: %v", codes)
	}
	later := h.now.Load().Add(time.Second)
	h.now.Store(&later)
	if code, body := h.do(t, call{path: "/kms/xks/v1/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, cred: emptyCred}); code != 200 {
		t.Fatalf("after a second: %d %s", code, body)
	}
}

func TestMethodNotAllowedAndPing(t *testing.T) {
	h := newHarness(t, nil)
	for _, p := range []string{ex + "/health", ex + "/keys/" + ExampleKeyLabel + "/encrypt", "/kms/xks/v1/keys/x/metadata"} {
		code, _ := h.do(t, call{method: http.MethodGet, path: p, unsigned: true})
		if code != http.StatusMethodNotAllowed {
			t.Fatalf("GET %s = %d, want 405", p, code)
		}
	}
	code, body := h.do(t, call{method: http.MethodGet, path: "/ping", unsigned: true})
	if code != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("GET /ping = %d %q", code, body)
	}
}

func TestMetadataReportsUsage(t *testing.T) {
	h := newHarness(t, nil)
	cred := h.store("/example").Credentials[1] // the spare credential works too
	tests := []struct {
		id, usage, status string
	}{
		{ExampleKeyLabel, "ENCRYPT,DECRYPT", "ENABLED"},
		{"enc-only", "ENCRYPT", "ENABLED"},
		{"dec-only", "DECRYPT", "ENABLED"},
		{"no-usage", "", "ENABLED"},
		{"disabled-key", "ENCRYPT,DECRYPT", "DISABLED"},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			code, body := h.do(t, call{path: ex + "/keys/" + tc.id + "/metadata", body: xks.MetadataRequest{RequestMetadata: md("CreateKey")}, cred: cred})
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			var m xks.MetadataResponse
			json.Unmarshal(body, &m)
			if m.KeySpec != "AES_256" || strings.Join(m.KeyUsage, ",") != tc.usage || m.KeyStatus != tc.status {
				t.Fatalf("metadata %+v", m)
			}
			if m.KeyUsage == nil {
				t.Fatal("keyUsage must be a list, not null")
			}
		})
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, nil)
	cred := h.store("/example").Credentials[0]
	code, body := h.do(t, call{path: ex + "/health", body: xks.HealthRequest{RequestMetadata: md("CreateCustomKeyStore")}, cred: cred})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var hr xks.HealthResponse
	json.Unmarshal(body, &hr)
	if hr.XksProxyFleetSize != 1 || len(hr.EKMFleetDetails) != 1 || hr.EKMFleetDetails[0].HealthStatus != "ACTIVE" || hr.EKMVendor != "SoftHSM project" {
		t.Fatalf("health %s", body)
	}
	// The fake's health turns UNAVAILABLE when it fails, but only once the
	// cached result is older than the TTL.
	fakeCred := h.store("/fake").Credentials[0]
	get := func() string {
		_, body := h.do(t, call{path: "/fake/kms/xks/v1/health", body: xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}, cred: fakeCred})
		var hr xks.HealthResponse
		json.Unmarshal(body, &hr)
		return hr.EKMFleetDetails[0].HealthStatus
	}
	if s := get(); s != "ACTIVE" {
		t.Fatalf("fake health %s", s)
	}
	h.fake.fail.Store(true)
	if s := get(); s != "ACTIVE" {
		t.Fatalf("cached health %s, want ACTIVE", s)
	}
	later := h.now.Load().Add(31 * time.Second)
	h.now.Store(&later)
	if s := get(); s != "UNAVAILABLE" {
		t.Fatalf("health after TTL %s, want UNAVAILABLE", s)
	}
}

func TestReloadRotatesCredentials(t *testing.T) {
	h := newHarness(t, nil)
	old := h.store("/example").Credentials
	hc := xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")}
	for i, c := range old {
		if code, body := h.do(t, call{path: ex + "/health", body: hc, cred: c}); code != 200 {
			t.Fatalf("credential %d before reload: %d %s", i, code, body)
		}
	}
	// Rotate: drop the first credential, keep the second, add a new one.
	fresh := newCredential()
	cfg := h.cfg
	cfg.KeyStores = append([]StoreConfig(nil), h.cfg.KeyStores...)
	cfg.KeyStores[0].Credentials = []Credential{old[1], fresh}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := WriteConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    Credential
		want int
	}{{old[0], 401}, {old[1], 200}, {fresh, 200}} {
		if code, body := h.do(t, call{path: ex + "/health", body: hc, cred: tc.c}); code != tc.want {
			t.Fatalf("after reload %s: %d, want %d (%s)", tc.c.AccessKeyID, code, tc.want, body)
		}
	}
	// A world-readable file is refused and the old settings stay.
	os.Chmod(path, 0o644)
	if err := h.srv.ReloadFile(path); err == nil {
		t.Fatal("reload of a 0644 config succeeded")
	}
	if code, _ := h.do(t, call{path: ex + "/health", body: hc, cred: fresh}); code != 200 {
		t.Fatal("failed reload changed the credentials")
	}
}

func TestConfigValidation(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no region", func(c *Config) { c.Region = "" }},
		{"bad prefix", func(c *Config) { c.KeyStores[0].URIPathPrefix = "/a/../b" }},
		{"short akid", func(c *Config) { c.KeyStores[0].Credentials[0].AccessKeyID = "AKID" }},
		{"short secret", func(c *Config) { c.KeyStores[0].Credentials[0].SecretAccessKey = "c2VjcmV0" }},
		{"long metadata", func(c *Config) {
			c.KeyStores[0].CiphertextMetadata = base64.StdEncoding.EncodeToString(make([]byte, 21))
		}},
		{"bad key id", func(c *Config) { c.KeyStores[0].Keys[0].ID = "a/b" }},
		{"small limit", func(c *Config) { c.Limits.MaxPlaintextBytes = 100 }},
		{"long health ttl", func(c *Config) { c.HealthCacheTTL = Duration(2 * time.Minute) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseCfg
			c.KeyStores = []StoreConfig{baseCfg.KeyStores[0]}
			c.KeyStores[0].Credentials = append([]Credential(nil), baseCfg.KeyStores[0].Credentials...)
			c.KeyStores[0].Keys = append([]KeyConfig(nil), baseCfg.KeyStores[0].Keys...)
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			if strings.Contains(err.Error(), baseCfg.KeyStores[0].Credentials[1].SecretAccessKey) {
				t.Fatal("validation error leaks a secret")
			}
		})
	}
	if s := fmt.Sprintf("%v %+v", baseCfg.KeyStores[0].Credentials[0], baseCfg.KeyStores[0].PKCS11); strings.Contains(s, baseCfg.KeyStores[0].Credentials[0].SecretAccessKey) || strings.Contains(s, baseCfg.KeyStores[0].PKCS11.UserPIN) {
		t.Fatalf("config types print secrets: %s", s)
	}
}

// TestCurlAgainstTLSListener drives the real TLS listener with curl's own
// SigV4 implementation (which signs content-type;host;x-amz-date).
func TestCurlAgainstTLSListener(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	ln, err := h.srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Shutdown(context.Background()) })
	cred := h.store("/example").Credentials[0]
	base := "https://" + ln.Addr.String()
	curl := func(args ...string) (string, string) {
		t.Helper()
		all := append([]string{"-sS", "--max-time", "5", "--cacert", initRes.CAFile, "-w", "\n%{http_code} %{http_version}"}, args...)
		out, err := exec.Command("curl", all...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		return strings.TrimSpace(s[:i]), s[i+1:]
	}
	sig := []string{"--aws-sigv4", "aws:amz:us-east-1:kms-xks-proxy", "--user", cred.AccessKeyID + ":" + cred.SecretAccessKey, "-H", "Content-Type: application/json"}
	hb, _ := json.Marshal(xks.HealthRequest{RequestMetadata: md("KmsHealthCheck")})
	for _, proto := range []string{"--http1.1", "--http2"} {
		body, status := curl(append(append([]string{proto}, sig...), "-d", string(hb), base+ex+"/health")...)
		wantVer := map[string]string{"--http1.1": "1.1", "--http2": "2"}[proto]
		if status != "200 "+wantVer || !strings.Contains(body, `"healthStatus":"ACTIVE"`) {
			t.Fatalf("curl %s health: %s %s", proto, status, body)
		}
	}
	eb, _ := json.Marshal(encReq([]byte("hello from curl"), nil))
	body, status := curl(append(sig, "-d", string(eb), base+ex+"/keys/"+ExampleKeyLabel+"/encrypt")...)
	if !strings.HasPrefix(status, "200") || !strings.Contains(body, `"ciphertextDataIntegrityValue"`) {
		t.Fatalf("curl encrypt: %s %s", status, body)
	}
	if _, status := curl("-X", "GET", base+ex+"/health"); !strings.HasPrefix(status, "405") {
		t.Fatalf("curl GET: %s", status)
	}
	if body, status := curl(base + "/ping"); !strings.HasPrefix(status, "200") || body != "ok" {
		t.Fatalf("curl ping: %s %q", status, body)
	}
	// A client that does not trust our CA cannot connect.
	out, err := exec.Command("curl", "-sS", "--max-time", "5", base+"/ping").CombinedOutput()
	if err == nil {
		t.Fatalf("curl without the CA succeeded: %s", out)
	}
}

func TestMutualTLS(t *testing.T) {
	h := newHarness(t, nil)
	dir := filepath.Dir(initRes.ConfigFile)
	cfg := h.cfg
	cfg.TLS.ClientCAFile = filepath.Join(dir, "ca.pem")
	cfg.TLS.ClientCommonName = "cks.kms.us-east-1.amazonaws.com"
	tc, err := cfg.TLS.build()
	if err != nil {
		t.Fatal(err)
	}
	if tc.ClientCAs == nil || tc.VerifyConnection == nil {
		t.Fatal("mTLS not configured")
	}
	if err := tc.VerifyConnection(tlsStateWithCN("someone-else")); err == nil {
		t.Fatal("wrong client CN accepted")
	}
	if err := tc.VerifyConnection(tlsStateWithCN("cks.kms.us-east-1.amazonaws.com")); err != nil {
		t.Fatalf("right client CN refused: %v", err)
	}
}

func BenchmarkHandlerEncrypt(b *testing.B) {
	h := newHarness(b, nil)
	cred := h.store("/example").Credentials[0]
	body, _ := json.Marshal(encReq(make([]byte, 32), nil))
	run := func(b *testing.B, cdiv bool) {
		bb := body
		if !cdiv {
			r := encReq(make([]byte, 32), nil)
			r.CiphertextDataIntegrityValueAlgorithm = ""
			bb, _ = json.Marshal(r)
		}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:8443"+ex+"/keys/"+ExampleKeyLabel+"/encrypt", bytes.NewReader(bb))
				sg := sigv4.Signer{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey, Region: "us-east-1", Service: xks.Service}
				sg.Sign(r, bb)
				w := httptest.NewRecorder()
				h.srv.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
	b.Run("cdiv+verify", func(b *testing.B) { run(b, true) })
	b.Run("plain", func(b *testing.B) { run(b, false) })
}

func tlsStateWithCN(cn string) tls.ConnectionState {
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: cn}}}}
}
