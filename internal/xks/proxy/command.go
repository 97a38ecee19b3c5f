package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/pkcs11"
	"github.com/keyhold/keyhold/internal/xks"
)

// DefaultModule is the SoftHSM2 PKCS#11 library on Debian and Ubuntu.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Key labels made by init.
const (
	ExampleKeyLabel = "xks-example-key"
	HealthKeyLabel  = "xks-health-key"
	// Made with --restricted-keys, for AWS's XKS proxy test client, which
	// also checks keys that may only encrypt, only decrypt, or neither.
	EncryptOnlyKeyLabel = "xks-encrypt-only-key"
	DecryptOnlyKeyLabel = "xks-decrypt-only-key"
	NoUsageKeyLabel     = "xks-no-usage-key"
)

// NormalizePrefix accepts a URI path prefix with or without its leading
// slash (and with a trailing one): "example", "/example" and "/example/"
// are all "/example"; "" and "/" are "".
func NormalizePrefix(p string) string {
	p = strings.Trim(strings.TrimSpace(p), "/")
	if p == "" {
		return ""
	}
	return "/" + p
}

// InitResult is what `init` prints: what CreateCustomKeyStore and
// CreateKey need, and where the files are.
type InitResult struct {
	XksProxyUriEndpoint              string         `json:"XksProxyUriEndpoint"`
	XksProxyUriPath                  string         `json:"XksProxyUriPath"`
	XksProxyAuthenticationCredential InitCredential `json:"XksProxyAuthenticationCredential"`
	XksKeyId                         string         `json:"XksKeyId"`
	ConfigFile                       string         `json:"ConfigFile"`
	CAFile                           string         `json:"CAFile"`
}

// InitCredential is the credential printed by init.
type InitCredential struct {
	AccessKeyId        string `json:"AccessKeyId"`
	RawSecretAccessKey string `json:"RawSecretAccessKey"`
}

// InitOptions are init's flags.
type InitOptions struct {
	Dir, Addr, Prefix, Region, Module string
	// RestrictedKeys also creates an encrypt-only, a decrypt-only and a
	// no-usage key (EncryptOnlyKeyLabel, ...).
	RestrictedKeys bool
}

// Init creates a ready-to-serve proxy in o.Dir: a CA and a server
// certificate for 127.0.0.1/localhost, a SoftHSM2 token directory with an
// example key and the health key, two credentials, and a 0600 config file.
// It sets SOFTHSM2_CONF for this process to the new token directory's
// configuration, so it must run before any other SoftHSM2 use in the process.
func Init(o InitOptions) (InitResult, error) {
	if o.Module == "" {
		o.Module = DefaultModule
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	o.Prefix = NormalizePrefix(o.Prefix)
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return InitResult{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return InitResult{}, fmt.Errorf("xks-proxy init: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return InitResult{}, fmt.Errorf("xks-proxy init: %s already holds a config.json", dir)
	}
	if err := writeCertificates(dir); err != nil {
		return InitResult{}, err
	}
	tokenLabel := "keyhold-xks"
	userPIN := randomHex(16)
	keys := []initKey{{ExampleKeyLabel, pkcs11.KeyUsage{Encrypt: true, Decrypt: true}}, {HealthKeyLabel, pkcs11.KeyUsage{Encrypt: true, Decrypt: true}}}
	if o.RestrictedKeys {
		keys = append(keys, initKey{EncryptOnlyKeyLabel, pkcs11.KeyUsage{Encrypt: true}},
			initKey{DecryptOnlyKeyLabel, pkcs11.KeyUsage{Decrypt: true}}, initKey{NoUsageKeyLabel, pkcs11.KeyUsage{}})
	}
	if err := initToken(dir, o.Module, tokenLabel, randomHex(16), userPIN, keys); err != nil {
		return InitResult{}, err
	}
	creds := []Credential{newCredential(), newCredential()}
	cfg := Config{
		Listen:       o.Addr,
		Region:       o.Region,
		SoftHSM2Conf: "softhsm2.conf",
		TLS:          TLSConfig{CertFile: "server.pem", KeyFile: "server-key.pem"},
		Limits:       Limits{MaxPlaintextBytes: xks.MinPlaintextLimit, MaxAADBytes: xks.MinAADLimit},
		HSMTimeout:   Duration(2 * time.Second),
		KeyStores: []StoreConfig{{
			URIPathPrefix:  o.Prefix,
			Credentials:    creds,
			PKCS11:         PKCS11Config{Module: o.Module, TokenLabel: tokenLabel, UserPIN: userPIN},
			HealthKeyLabel: HealthKeyLabel,
			Keys:           keyConfigs(keys),
		}},
	}
	if err := cfg.Validate(); err != nil {
		return InitResult{}, err
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := WriteConfig(cfgPath, cfg); err != nil {
		return InitResult{}, err
	}
	return InitResult{
		XksProxyUriEndpoint: "https://" + o.Addr,
		XksProxyUriPath:     o.Prefix + xks.PathSuffix,
		XksProxyAuthenticationCredential: InitCredential{
			AccessKeyId: creds[0].AccessKeyID, RawSecretAccessKey: creds[0].SecretAccessKey,
		},
		XksKeyId:   ExampleKeyLabel,
		ConfigFile: cfgPath,
		CAFile:     filepath.Join(dir, "ca.pem"),
	}, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n / 2)) }

// newCredential makes an XKS credential: a 24-char access key id of A-Z2-7
// and a 44-char base64 secret from 32 random bytes.
func newCredential() Credential {
	return Credential{
		AccessKeyID:     base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(randomBytes(15)),
		SecretAccessKey: base64.StdEncoding.EncodeToString(randomBytes(32)),
	}
}

// initToken creates DIR/tokens and DIR/softhsm2.conf, points this process at
// them and makes a token with the example and health keys.
type initKey struct {
	label string
	usage pkcs11.KeyUsage
}

// keyConfigs lists init's keys in the configuration (the health key is
// the store's, not an external key).
func keyConfigs(keys []initKey) []KeyConfig {
	var out []KeyConfig
	for _, k := range keys {
		if k.label != HealthKeyLabel {
			out = append(out, KeyConfig{ID: k.label})
		}
	}
	return out
}

func initToken(dir, module, label, soPIN, userPIN string, keys []initKey) error {
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	mod, err := pkcs11.Open(module)
	if err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	defer mod.Close()
	free, err := mod.FreeSlot()
	if err != nil {
		return fmt.Errorf("xks-proxy init: no free SoftHSM2 slot (is SOFTHSM2_CONF honoured?): %w", err)
	}
	if err := mod.InitToken(free, soPIN, label); err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	slot, err := mod.FindToken(label)
	if err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	so, err := mod.OpenSession(slot, pkcs11.SO, soPIN)
	if err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	err = so.InitPIN(userPIN)
	so.Close()
	if err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	user, err := mod.OpenSession(slot, pkcs11.User, userPIN)
	if err != nil {
		return fmt.Errorf("xks-proxy init: %w", err)
	}
	defer user.Close()
	for _, k := range keys {
		if _, err := user.GenerateAESKey(k.label, nil, k.usage, true); err != nil {
			return fmt.Errorf("xks-proxy init: key %s: %w", k.label, err)
		}
	}
	return nil
}

// writeCertificates writes ca.pem, server.pem and server-key.pem (0600):
// an ECDSA P-256 CA and a server certificate for 127.0.0.1, ::1 and
// localhost signed by it. The CA key is not kept.
func writeCertificates(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(randomBytes(16)),
		Subject:               pkix.Name{CommonName: "keyhold xks-proxy CA", Organization: []string{"keyhold"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(randomBytes(16)),
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"keyhold"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	files := []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.pem", "CERTIFICATE", caDER, 0o644},
		{"server.pem", "CERTIFICATE", der, 0o644},
		{"server-key.pem", "PRIVATE KEY", keyDER, 0o600},
	}
	for _, f := range files {
		b := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(dir, f.name), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}
