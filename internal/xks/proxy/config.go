package proxy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/config"
	"github.com/keyhold/keyhold/internal/netlimit"
	"github.com/keyhold/keyhold/internal/xks"
)

// Config is the proxy configuration; see the package documentation for the
// file format.
type Config struct {
	Listen         string        `json:"listen"`
	PingListen     string        `json:"pingListen,omitempty"`
	Region         string        `json:"region"`
	SoftHSM2Conf   string        `json:"softhsm2Conf,omitempty"`
	TLS            TLSConfig     `json:"tls"`
	Limits         Limits        `json:"limits"`
	Connections    ConnLimits    `json:"connections,omitempty"`
	HSMTimeout     Duration      `json:"hsmTimeout,omitempty"`
	HealthCacheTTL Duration      `json:"healthCacheTTL,omitempty"`
	KeyStores      []StoreConfig `json:"keyStores"`
}

// TLSConfig names the server certificate and the optional mTLS settings.
type TLSConfig struct {
	CertFile         string `json:"certFile"`
	KeyFile          string `json:"keyFile"`
	ClientCAFile     string `json:"clientCAFile,omitempty"`
	ClientCommonName string `json:"clientCommonName,omitempty"`
}

// Limits bound the decoded sizes the proxy accepts.
type Limits struct {
	MaxPlaintextBytes int `json:"maxPlaintextBytes,omitempty"`
	MaxAADBytes       int `json:"maxAADBytes,omitempty"`
}

// ConnLimits bound the proxy's client connections; zero fields take the
// proxy's defaults (XKSConnDefaults), a negative count turns a cap off.
type ConnLimits struct {
	MaxConns          int      `json:"maxConns,omitempty"`
	MaxConnsPerClient int      `json:"maxConnsPerClient,omitempty"`
	ReadHeaderTimeout Duration `json:"readHeaderTimeout,omitempty"`
	ReadTimeout       Duration `json:"readTimeout,omitempty"`
	WriteTimeout      Duration `json:"writeTimeout,omitempty"`
	IdleTimeout       Duration `json:"idleTimeout,omitempty"`
	MaxHeaderBytes    int      `json:"maxHeaderBytes,omitempty"`
}

// XKSConnDefaults are the proxy's connection bounds: AWS KMS gives an XKS
// call 250 ms, so requests and answers get seconds, not minutes.
var XKSConnDefaults = netlimit.Limits{
	MaxConns: 1024, MaxConnsPerClient: 256,
	ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
}

// netLimits merges c over XKSConnDefaults.
func (c ConnLimits) netLimits() netlimit.Limits {
	l := XKSConnDefaults
	if c.MaxConns != 0 {
		l.MaxConns = c.MaxConns
	}
	if c.MaxConnsPerClient != 0 {
		l.MaxConnsPerClient = c.MaxConnsPerClient
	}
	if c.ReadHeaderTimeout != 0 {
		l.ReadHeaderTimeout = time.Duration(c.ReadHeaderTimeout)
	}
	if c.ReadTimeout != 0 {
		l.ReadTimeout = time.Duration(c.ReadTimeout)
	}
	if c.WriteTimeout != 0 {
		l.WriteTimeout = time.Duration(c.WriteTimeout)
	}
	if c.IdleTimeout != 0 {
		l.IdleTimeout = time.Duration(c.IdleTimeout)
	}
	if c.MaxHeaderBytes != 0 {
		l.MaxHeaderBytes = c.MaxHeaderBytes
	}
	return l
}

// StoreConfig is one logical key store, served under one URI path prefix.
type StoreConfig struct {
	URIPathPrefix        string       `json:"uriPathPrefix"`
	Credentials          []Credential `json:"credentials"`
	PKCS11               PKCS11Config `json:"pkcs11"`
	HealthKeyLabel       string       `json:"healthKeyLabel"`
	CiphertextMetadata   string       `json:"ciphertextMetadata,omitempty"`
	Disabled             bool         `json:"disabled,omitempty"`
	MaxRequestsPerSecond float64      `json:"maxRequestsPerSecond,omitempty"`
	Keys                 []KeyConfig  `json:"keys"`
}

// Credential is one SigV4 credential accepted for a prefix. It never prints
// its secret.
type Credential struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

func (c Credential) String() string   { return "Credential{" + c.AccessKeyID + ", [REDACTED]}" }
func (c Credential) GoString() string { return c.String() }

// PKCS11Config says which token holds a prefix's keys.
type PKCS11Config struct {
	Module     string `json:"module"`
	TokenLabel string `json:"tokenLabel"`
	UserPIN    string `json:"userPin"`
}

func (c PKCS11Config) String() string {
	return fmt.Sprintf("PKCS11Config{%s, %s, [REDACTED]}", c.Module, c.TokenLabel)
}
func (c PKCS11Config) GoString() string { return c.String() }

// KeyConfig maps an external key id to a PKCS#11 key label.
type KeyConfig struct {
	ID                 string `json:"id"`
	Label              string `json:"label,omitempty"`
	CiphertextMetadata string `json:"ciphertextMetadata,omitempty"`
	Disabled           bool   `json:"disabled,omitempty"`
}

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

var (
	prefixRE = regexp.MustCompile(`^(/[A-Za-z0-9_-]+)*$`)
	keyIDRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	akidRE   = regexp.MustCompile(`^[A-Z2-7]{20,30}$`)
	secretRE = regexp.MustCompile(`^[A-Za-z0-9/+=]{43,64}$`)
)

// LoadConfig reads and validates a configuration file. It refuses a file
// that group or others can read, since it holds secrets.
func LoadConfig(path string) (Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Config{}, fmt.Errorf("proxy.LoadConfig: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return Config{}, fmt.Errorf("proxy.LoadConfig: %s is mode %v; it holds secrets and must be 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("proxy.LoadConfig: %w", err)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("proxy.LoadConfig %s%s: %w", path, config.JSONErrorLine(b, err), err)
	}
	c.resolve(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) resolve(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.SoftHSM2Conf = abs(c.SoftHSM2Conf)
	c.TLS.CertFile = abs(c.TLS.CertFile)
	c.TLS.KeyFile = abs(c.TLS.KeyFile)
	c.TLS.ClientCAFile = abs(c.TLS.ClientCAFile)
}

// withDefaults fills the optional settings.
func (c Config) withDefaults() Config {
	if c.Limits.MaxPlaintextBytes == 0 {
		c.Limits.MaxPlaintextBytes = xks.MinPlaintextLimit
	}
	if c.Limits.MaxAADBytes == 0 {
		c.Limits.MaxAADBytes = xks.MinAADLimit
	}
	if c.HSMTimeout == 0 {
		c.HSMTimeout = Duration(2 * time.Second)
	}
	if c.HealthCacheTTL == 0 {
		c.HealthCacheTTL = Duration(30 * time.Second)
	}
	return c
}

// Validate checks the configuration; error messages never include secrets.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c = c.withDefaults()
	if c.Region == "" {
		bad("region is required")
	}
	if c.Limits.MaxPlaintextBytes < xks.MinPlaintextLimit {
		bad("limits.maxPlaintextBytes must be at least %d", xks.MinPlaintextLimit)
	}
	if c.Limits.MaxAADBytes < xks.MinAADLimit || c.Limits.MaxAADBytes > 0xFFFF {
		bad("limits.maxAADBytes must be between %d and 65535", xks.MinAADLimit)
	}
	if c.HealthCacheTTL < 0 || time.Duration(c.HealthCacheTTL) > time.Minute {
		bad("healthCacheTTL must be at most 1m")
	}
	if (c.TLS.ClientCommonName != "") && c.TLS.ClientCAFile == "" {
		bad("tls.clientCommonName needs tls.clientCAFile")
	}
	if len(c.KeyStores) == 0 {
		bad("at least one key store is required")
	}
	prefixes := map[string]bool{}
	akids := map[string]bool{}
	for i, s := range c.KeyStores {
		where := fmt.Sprintf("keyStores[%d] (%q)", i, s.URIPathPrefix)
		if !prefixRE.MatchString(s.URIPathPrefix) || len(s.URIPathPrefix)+len(xks.PathSuffix) > 128 {
			bad("%s: uriPathPrefix must be empty or /segments of [A-Za-z0-9_-], at most 117 chars", where)
		}
		if prefixes[s.URIPathPrefix] {
			bad("%s: duplicate uriPathPrefix", where)
		}
		prefixes[s.URIPathPrefix] = true
		if len(s.Credentials) == 0 {
			bad("%s: at least one credential is required", where)
		}
		for j, cr := range s.Credentials {
			if !akidRE.MatchString(cr.AccessKeyID) {
				bad("%s: credentials[%d].accessKeyId must be 20-30 chars of A-Z2-7", where, j)
			}
			if !secretRE.MatchString(cr.SecretAccessKey) {
				bad("%s: credentials[%d].secretAccessKey must be 43-64 chars of [A-Za-z0-9/+=]", where, j)
			}
			if akids[cr.AccessKeyID] {
				bad("%s: access key id %s is used twice", where, cr.AccessKeyID)
			}
			akids[cr.AccessKeyID] = true
		}
		if s.PKCS11.Module == "" || s.PKCS11.TokenLabel == "" {
			bad("%s: pkcs11.module and pkcs11.tokenLabel are required", where)
		}
		if s.HealthKeyLabel == "" {
			bad("%s: healthKeyLabel is required", where)
		}
		if _, err := decodeMetadata(s.CiphertextMetadata); err != nil {
			bad("%s: ciphertextMetadata: %v", where, err)
		}
		if s.MaxRequestsPerSecond < 0 {
			bad("%s: maxRequestsPerSecond must not be negative", where)
		}
		ids := map[string]bool{}
		for j, k := range s.Keys {
			if !keyIDRE.MatchString(k.ID) {
				bad("%s: keys[%d].id must be 1-128 chars of [A-Za-z0-9-._]", where, j)
			}
			if ids[k.ID] {
				bad("%s: keys[%d]: duplicate id %q", where, j, k.ID)
			}
			ids[k.ID] = true
			if _, err := decodeMetadata(k.CiphertextMetadata); err != nil {
				bad("%s: keys[%d].ciphertextMetadata: %v", where, j, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("proxy config: %w", errors.Join(errs...))
	}
	return nil
}

func decodeMetadata(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not standard base64")
	}
	if len(b) > xks.MaxCiphertextMetadata {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), xks.MaxCiphertextMetadata)
	}
	return b, nil
}

// WriteConfig writes c to path with mode 0600.
func WriteConfig(path string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
