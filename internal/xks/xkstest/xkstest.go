// Package xkstest is a fault-injecting fake XKS proxy for tests of the XKS
// client and of keyhold's EXTERNAL_KEY_STORE support. It runs the real
// proxy handler (SigV4, routing, error table, AAD and CDIV) over an
// in-memory Go AES-GCM backend, on an HTTPS listener on 127.0.0.1 with its
// own throwaway CA, and can be switched into the failure modes KMS must
// classify: slow answers, 5xx, garbage JSON, any spec error, rejected
// signatures, refused connections and an untrusted certificate.
//
// It is for tests only: its keys live in memory and it must never be used
// to protect real data.
package xkstest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// Fault is a failure mode of the fake.
type Fault int

const (
	// None serves normally.
	None Fault = iota
	// Slow never answers: it holds each call until the client gives up
	// (or the fake stops), so the client's time limit is what ends it,
	// however busy the machine.
	Slow
	// ServerError answers 500 with a non-JSON body, like a broken load balancer.
	ServerError
	// Garbage answers 200 with a body that is not JSON.
	Garbage
	// ErrorName answers the spec error set with SetErrorName, with its status.
	ErrorName
	// WrongSecret makes the fake expect a different secret, so every signed
	// call is rejected by the real verifier as AuthenticationFailedException.
	WrongSecret
	// Refused closes the listener: connections are refused.
	Refused
	// UntrustedCert serves a certificate from a CA the client does not trust.
	UntrustedCert
	// CloseAfterAnswer answers normally with "Connection: close" and closes
	// the connection after each answer.
	CloseAfterAnswer
)

// Key is an external key of the fake.
type Key struct {
	ID               string
	Encrypt, Decrypt bool
	Disabled         bool
}

// Options configure New. Zero values get defaults.
type Options struct {
	Prefix string // URI path prefix; default "/fake"
	Region string // default "us-east-1"
	Keys   []Key  // default one key "fake-key-1" allowing both
	// CiphertextMetadata is returned with every encrypt (≤ 20 bytes).
	CiphertextMetadata []byte
}

// Proxy is a running fake. Endpoint, Path, AccessKeyID, SecretAccessKey,
// Region and RootCAs are what a client needs.
type Proxy struct {
	Endpoint        string // https://127.0.0.1:PORT
	Path            string // PREFIX/kms/xks/v1
	AccessKeyID     string
	SecretAccessKey string
	Region          string
	RootCAs         *x509.CertPool // trusts the fake's normal certificate only
	KeyIDs          []string

	cfg     proxy.Config
	handler *proxy.Server
	addr    string
	good    tls.Certificate
	bad     tls.Certificate

	mu        sync.Mutex
	fault     Fault
	errorName string
	srv       *http.Server
	calls     int
}

// New starts a fake on 127.0.0.1 and stops it when the test ends.
func New(t testing.TB, o Options) *Proxy {
	t.Helper()
	p, err := start(o)
	if err != nil {
		t.Fatalf("xkstest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func start(o Options) (*Proxy, error) {
	if o.Prefix == "" {
		o.Prefix = "/fake"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if len(o.Keys) == 0 {
		o.Keys = []Key{{ID: "fake-key-1", Encrypt: true, Decrypt: true}}
	}
	good, pool, err := newCert()
	if err != nil {
		return nil, err
	}
	bad, _, err := newCert()
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		Path: o.Prefix + xks.PathSuffix, Region: o.Region, RootCAs: pool, good: good, bad: bad,
		AccessKeyID:     base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(random(15)),
		SecretAccessKey: base64.StdEncoding.EncodeToString(random(32)),
	}
	backend := &memBackend{keys: map[string]memKey{}}
	sc := proxy.StoreConfig{
		URIPathPrefix:      o.Prefix,
		Credentials:        []proxy.Credential{{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.SecretAccessKey}},
		PKCS11:             proxy.PKCS11Config{Module: "in-memory", TokenLabel: "xkstest"},
		HealthKeyLabel:     "xkstest-health",
		CiphertextMetadata: base64.StdEncoding.EncodeToString(o.CiphertextMetadata),
	}
	if len(o.CiphertextMetadata) == 0 {
		sc.CiphertextMetadata = ""
	}
	backend.add("xkstest-health", true, true)
	for _, k := range o.Keys {
		backend.add(k.ID, k.Encrypt, k.Decrypt)
		sc.Keys = append(sc.Keys, proxy.KeyConfig{ID: k.ID, Disabled: k.Disabled})
		p.KeyIDs = append(p.KeyIDs, k.ID)
	}
	p.cfg = proxy.Config{Listen: "127.0.0.1:0", Region: o.Region, HealthCacheTTL: proxy.Duration(time.Nanosecond), KeyStores: []proxy.StoreConfig{sc}}
	p.handler, err = proxy.New(p.cfg, proxy.WithBackend(o.Prefix, backend),
		proxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.addr = ln.Addr().String()
	p.Endpoint = "https://" + p.addr
	p.serve(ln)
	return p, nil
}

func (p *Proxy) serve(ln net.Listener) {
	srv := &http.Server{
		Handler: http.HandlerFunc(p.serveHTTP),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				p.mu.Lock()
				defer p.mu.Unlock()
				if p.fault == UntrustedCert {
					return &p.bad, nil
				}
				return &p.good, nil
			},
		},
		ReadHeaderTimeout: 5 * time.Second,
	}
	p.srv = srv
	go srv.ServeTLS(ln, "", "")
}

// SetFault switches the failure mode. Open connections are closed so the
// next call sees the new mode from its first byte (TLS included).
func (p *Proxy) SetFault(f Fault) {
	p.mu.Lock()
	prev := p.fault
	p.fault = f
	srv := p.srv
	p.mu.Unlock()

	if (f == WrongSecret) != (prev == WrongSecret) {
		cfg := p.cfg
		cfg.KeyStores = append([]proxy.StoreConfig(nil), p.cfg.KeyStores...)
		if f == WrongSecret {
			cfg.KeyStores[0].Credentials = []proxy.Credential{{AccessKeyID: p.AccessKeyID, SecretAccessKey: base64.StdEncoding.EncodeToString(random(32))}}
		}
		if err := p.handler.Reload(cfg); err != nil {
			panic("xkstest: reload: " + err.Error())
		}
	}
	srv.Close()
	if f == Refused {
		return
	}
	// Listen again on the same port (SO_REUSEADDR makes this immediate).
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		panic("xkstest: re-listen on " + p.addr + ": " + err.Error())
	}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
}

// SetErrorName chooses the spec error the ErrorName fault answers with.
func (p *Proxy) SetErrorName(name string) {
	p.mu.Lock()
	p.errorName = name
	p.mu.Unlock()
}

// Calls reports how many requests reached the fake.
func (p *Proxy) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Close stops the fake.
func (p *Proxy) Close() {
	p.mu.Lock()
	srv := p.srv
	p.fault = Refused
	p.mu.Unlock()
	srv.Close()
	p.handler.Close()
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	f, name := p.fault, p.errorName
	p.calls++
	p.mu.Unlock()
	switch f {
	case Slow:
		<-r.Context().Done()
		return
	case ServerError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
		return
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ciphertext": "not-base64!!`)
		return
	case ErrorName:
		status, ok := xks.ErrorStatus[name]
		if !ok {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(xks.ErrorResponse{ErrorName: name, ErrorMessage: "injected by xkstest"})
		return
	case CloseAfterAnswer:
		w.Header().Set("Connection", "close")
	}
	p.handler.ServeHTTP(w, r)
}

// memBackend is the fake's key manager: AES-256-GCM keys in memory.
type memBackend struct {
	mu   sync.Mutex
	keys map[string]memKey
}

type memKey struct {
	aead             cipher.AEAD
	encrypt, decrypt bool
}

func (b *memBackend) add(label string, enc, dec bool) {
	blk, _ := aes.NewCipher(random(32))
	a, _ := cipher.NewGCM(blk)
	b.mu.Lock()
	b.keys[label] = memKey{aead: a, encrypt: enc, decrypt: dec}
	b.mu.Unlock()
}

func (b *memBackend) get(label string) (memKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.keys[label]
	if !ok {
		return memKey{}, fmt.Errorf("xkstest: %q: %w", label, proxy.ErrKeyNotFound)
	}
	return k, nil
}

func (b *memBackend) Key(_ context.Context, label string) (proxy.KeyInfo, error) {
	k, err := b.get(label)
	if err != nil {
		return proxy.KeyInfo{}, err
	}
	info := proxy.KeyInfo{Spec: xks.KeySpecAES256, Usage: []string{}, CanEncrypt: k.encrypt, CanDecrypt: k.decrypt}
	if k.encrypt {
		info.Usage = append(info.Usage, xks.UsageEncrypt)
	}
	if k.decrypt {
		info.Usage = append(info.Usage, xks.UsageDecrypt)
	}
	return info, nil
}

func (b *memBackend) Encrypt(_ context.Context, label string, iv, aad, pt []byte) ([]byte, []byte, error) {
	k, err := b.get(label)
	if err != nil {
		return nil, nil, err
	}
	if !k.encrypt {
		return nil, nil, proxy.ErrKeyUsage
	}
	if len(iv) != k.aead.NonceSize() {
		return nil, nil, fmt.Errorf("xkstest: IV must be %d bytes", k.aead.NonceSize())
	}
	return k.aead.Seal(nil, iv, pt, aad), iv, nil
}

func (b *memBackend) Decrypt(_ context.Context, label string, iv, aad, ct []byte) ([]byte, error) {
	k, err := b.get(label)
	if err != nil {
		return nil, err
	}
	if !k.decrypt {
		return nil, proxy.ErrKeyUsage
	}
	if len(iv) != k.aead.NonceSize() {
		return nil, proxy.ErrDecrypt
	}
	pt, err := k.aead.Open(nil, iv, ct, aad)
	if err != nil {
		return nil, proxy.ErrDecrypt
	}
	return pt, nil
}

func (b *memBackend) EKM(context.Context) (proxy.EKMInfo, error) {
	return proxy.EKMInfo{Vendor: "keyhold xkstest", Model: "in-memory", ID: "xkstest-1"}, nil
}

func (b *memBackend) Close() error { return nil }

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// newCert makes a throwaway CA and a certificate for 127.0.0.1/localhost.
func newCert() (tls.Certificate, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(random(16)), Subject: pkix.Name{CommonName: "xkstest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(random(16)), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool, nil
}
