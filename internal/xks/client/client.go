// Package client is the XKS proxy client keyhold's KMS uses for external key
// stores: it signs XKS API v1 calls with SigV4 (service kms-xks-proxy),
// reuses connections, enforces KMS's per-call timeout with one retry on a
// network timeout, verifies what the proxy answers (shapes, sizes, the
// ciphertext data integrity value) and classifies every failure the way AWS
// KMS reports it (ConnectionErrorCode, CreateStoreError, CreateKeyError).
//
// It never skips TLS verification, and never logs or puts into an error a
// plaintext, an AAD or the secret access key.
package client

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/sigv4"
	"github.com/keyhold/keyhold/internal/xks"
)

// DefaultTimeout is KMS's limit for one XKS call.
const DefaultTimeout = 250 * time.Millisecond

// maxResponse bounds how much of a proxy answer is read.
const maxResponse = 1 << 20

// Config says where the proxy is and how to authenticate to it.
type Config struct {
	Endpoint        string // "https://host[:port]"
	Path            string // "[/prefix]/kms/xks/v1"
	AccessKeyID     string
	SecretAccessKey string
	Region          string         // the KMS region, signed into the credential scope
	RootCAs         *x509.CertPool // nil = system roots; verification is never skipped
	Timeout         time.Duration  // per attempt; 0 = 250ms
}

// String leaves the secret out.
func (c Config) String() string {
	return fmt.Sprintf("xks client %s%s (access key %s, region %s)", c.Endpoint, c.Path, c.AccessKeyID, c.Region)
}

// GoString leaves the secret out.
func (c Config) GoString() string { return c.String() }

// RequestMetadata is what KMS tells the proxy about the call it serves.
type RequestMetadata struct {
	AWSPrincipalARN, KMSKeyARN, KMSOperation, KMSRequestID, KMSViaService string
}

// HealthStatus is the proxy's GetHealthStatus answer.
type HealthStatus struct {
	FleetSize       int
	ProxyVendor     string
	ProxyModel      string
	EKMVendor       string
	EKMFleetDetails []EKM
}

// EKM is one external key manager behind the proxy.
type EKM struct{ ID, Model, HealthStatus string }

// KeyMetadata is the proxy's GetKeyMetadata answer.
type KeyMetadata struct {
	KeySpec   string
	KeyUsage  []string
	KeyStatus string
}

// EncryptResult is everything the proxy returned for an encrypt; KMS keeps
// all of it in the ciphertext blob.
type EncryptResult struct {
	Ciphertext, IV, AuthTag, CiphertextMetadata []byte
}

// Client calls one XKS proxy key store. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string
	pool   *connPool
	signer *sigv4.Signer
}

var (
	pathRE  = regexp.MustCompile(`^(/[a-zA-Z0-9/_-]+)?/kms/xks/v\d{1,2}$`)
	keyIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// New validates cfg and builds a Client. A bad configuration gives a
// *ConfigError (ConnectionErrorCode XKS_PROXY_INVALID_CONFIGURATION).
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return nil, &ConfigError{"XksProxyUriEndpoint must be https://host[:port]"}
	case !pathRE.MatchString(cfg.Path) || len(cfg.Path) > 128 || strings.Contains(cfg.Path, "//"):
		return nil, &ConfigError{"XksProxyUriPath must be [/prefix]/kms/xks/v1"}
	case cfg.AccessKeyID == "" || cfg.SecretAccessKey == "":
		return nil, &ConfigError{"an access key id and a secret access key are required"}
	case cfg.Region == "":
		return nil, &ConfigError{"a region is required"}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs, ServerName: host, NextProtos: []string{"http/1.1"}}
	return &Client{
		cfg:    cfg,
		base:   strings.TrimSuffix(u.Scheme+"://"+u.Host, "/") + cfg.Path,
		pool:   newConnPool(net.JoinHostPort(host, port), tc, cfg.Timeout),
		signer: &sigv4.Signer{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, Region: cfg.Region, Service: xks.Service},
	}, nil
}

// CloseIdleConnections drops pooled connections (after a credential or
// endpoint change, or in tests).
func (c *Client) CloseIdleConnections() { c.pool.closeIdle() }

func wireMetadata(md RequestMetadata, api string) *xks.RequestMetadata {
	w := &xks.RequestMetadata{KMSOperation: md.KMSOperation, KMSRequestID: md.KMSRequestID}
	if api != "health" {
		w.AWSPrincipalARN = md.AWSPrincipalARN
		w.KMSKeyARN = md.KMSKeyARN
		w.KMSViaService = md.KMSViaService
	}
	return w
}

// ErrUnavailable is returned by Health (with the status) when every
// external key manager reports UNAVAILABLE.
var ErrUnavailable = errors.New("xks client: the proxy reports every external key manager UNAVAILABLE")

// Health calls GetHealthStatus. When the answer is well formed but every
// EKM is UNAVAILABLE it returns the status and an error wrapping
// ErrUnavailable (ConnectionErrorCode XKS_PROXY_NOT_REACHABLE).
func (c *Client) Health(ctx context.Context, md RequestMetadata) (HealthStatus, error) {
	var out xks.HealthResponse
	if err := c.call(ctx, "/health", xks.HealthRequest{RequestMetadata: wireMetadata(md, "health")}, &out); err != nil {
		return HealthStatus{}, err
	}
	if out.XksProxyFleetSize < 1 || len(out.EKMFleetDetails) < 1 || len(out.EKMFleetDetails) > 10 {
		return HealthStatus{}, invalid("health answer has no fleet")
	}
	hs := HealthStatus{FleetSize: out.XksProxyFleetSize, ProxyVendor: out.XksProxyVendor, ProxyModel: out.XksProxyModel, EKMVendor: out.EKMVendor}
	up := false
	for _, e := range out.EKMFleetDetails {
		switch e.HealthStatus {
		case xks.HealthActive, xks.HealthDegraded:
			up = true
		case xks.HealthUnavailable:
		default:
			return HealthStatus{}, invalid("health answer has an unknown healthStatus")
		}
		hs.EKMFleetDetails = append(hs.EKMFleetDetails, EKM{ID: e.ID, Model: e.Model, HealthStatus: e.HealthStatus})
	}
	if !up {
		return hs, ErrUnavailable
	}
	return hs, nil
}

func keyPath(keyID, op string) (string, error) {
	if !keyIDRE.MatchString(keyID) {
		return "", &ConfigError{"external key id must be 1-128 chars of [A-Za-z0-9-._]"}
	}
	return "/keys/" + keyID + "/" + op, nil
}

// KeyMetadata calls GetKeyMetadata. It does not judge the answer; see
// CheckKeyMetadata for what CreateKey requires.
func (c *Client) KeyMetadata(ctx context.Context, keyID string, md RequestMetadata) (KeyMetadata, error) {
	p, err := keyPath(keyID, "metadata")
	if err != nil {
		return KeyMetadata{}, err
	}
	var out xks.MetadataResponse
	if err := c.call(ctx, p, xks.MetadataRequest{RequestMetadata: wireMetadata(md, "metadata")}, &out); err != nil {
		return KeyMetadata{}, err
	}
	if out.KeySpec == "" || out.KeyStatus == "" || out.KeyUsage == nil || len(out.KeyUsage) > 10 {
		return KeyMetadata{}, invalid("metadata answer lacks keySpec, keyUsage or keyStatus")
	}
	return KeyMetadata{KeySpec: out.KeySpec, KeyUsage: out.KeyUsage, KeyStatus: out.KeyStatus}, nil
}

// KeyConfigError says why an external key cannot back a KMS key
// (CreateKeyError: XksKeyInvalidConfigurationException).
type KeyConfigError struct{ Reason string }

func (e *KeyConfigError) Error() string { return "xks client: external key unusable: " + e.Reason }

// CheckKeyMetadata applies KMS's CreateKey rules: AES_256, ENCRYPT and
// DECRYPT allowed, ENABLED. It returns a *KeyConfigError otherwise.
func CheckKeyMetadata(m KeyMetadata) error {
	if m.KeySpec != xks.KeySpecAES256 {
		return &KeyConfigError{"key spec is " + m.KeySpec + ", not AES_256"}
	}
	enc, dec := false, false
	for _, u := range m.KeyUsage {
		enc = enc || u == xks.UsageEncrypt
		dec = dec || u == xks.UsageDecrypt
	}
	if !enc || !dec {
		return &KeyConfigError{"key usage must include ENCRYPT and DECRYPT"}
	}
	if m.KeyStatus != xks.KeyStatusEnabled {
		return &KeyConfigError{"key status is " + m.KeyStatus}
	}
	return nil
}

// Encrypt asks the proxy to encrypt plaintext under keyID, bound to aad,
// requests a CDIV and verifies it (a mismatch or any malformed field is an
// *InvalidResponseError).
func (c *Client) Encrypt(ctx context.Context, keyID string, md RequestMetadata, plaintext, aad []byte) (EncryptResult, error) {
	p, err := keyPath(keyID, "encrypt")
	if err != nil {
		return EncryptResult{}, err
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	in := xks.EncryptRequest{
		RequestMetadata: wireMetadata(md, "encrypt"), Plaintext: plaintext, EncryptionAlgorithm: xks.EncryptionAlgorithm,
		AdditionalAuthenticatedData: aad, CiphertextDataIntegrityValueAlgorithm: xks.CDIVAlgorithm,
	}
	var out xks.EncryptResponse
	if err := c.call(ctx, p, in, &out); err != nil {
		return EncryptResult{}, err
	}
	switch {
	case len(out.Ciphertext) != len(plaintext):
		return EncryptResult{}, invalid("ciphertext length differs from the plaintext's")
	case len(out.InitializationVector) != 12 && len(out.InitializationVector) != 16:
		return EncryptResult{}, invalid("initializationVector is not 12 or 16 bytes")
	case len(out.AuthenticationTag) != xks.AuthTagSize:
		return EncryptResult{}, invalid("authenticationTag is not 16 bytes")
	case len(out.CiphertextMetadata) > xks.MaxCiphertextMetadata:
		return EncryptResult{}, invalid("ciphertextMetadata is longer than 20 bytes")
	case out.CiphertextDataIntegrityValue == "":
		return EncryptResult{}, invalid("ciphertextDataIntegrityValue is missing")
	}
	want := xks.CDIV(aad, out.CiphertextMetadata, out.InitializationVector, out.Ciphertext, out.AuthenticationTag)
	if subtle.ConstantTimeCompare([]byte(want), []byte(out.CiphertextDataIntegrityValue)) != 1 {
		return EncryptResult{}, invalid("ciphertextDataIntegrityValue does not match the answer")
	}
	return EncryptResult{Ciphertext: out.Ciphertext, IV: out.InitializationVector, AuthTag: out.AuthenticationTag, CiphertextMetadata: out.CiphertextMetadata}, nil
}

// Decrypt asks the proxy to decrypt what Encrypt returned.
func (c *Client) Decrypt(ctx context.Context, keyID string, md RequestMetadata, ciphertext, iv, authTag, aad, ciphertextMetadata []byte) ([]byte, error) {
	p, err := keyPath(keyID, "decrypt")
	if err != nil {
		return nil, err
	}
	if ciphertext == nil {
		ciphertext = []byte{}
	}
	in := xks.DecryptRequest{
		RequestMetadata: wireMetadata(md, "decrypt"), Ciphertext: ciphertext, CiphertextMetadata: ciphertextMetadata,
		EncryptionAlgorithm: xks.EncryptionAlgorithm, AdditionalAuthenticatedData: aad,
		InitializationVector: iv, AuthenticationTag: authTag,
	}
	var out xks.DecryptResponse
	if err := c.call(ctx, p, in, &out); err != nil {
		return nil, err
	}
	if out.Plaintext == nil || len(out.Plaintext) != len(ciphertext) {
		return nil, invalid("plaintext is missing or has the wrong length")
	}
	return out.Plaintext, nil
}

// call POSTs in to path and decodes a 200 answer into out, retrying once
// when an attempt times out at the network level.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("xks client: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		lastErr = c.attempt(ctx, path, body, out)
		var te *TransportError
		if lastErr == nil || !errors.As(lastErr, &te) || te.Kind != Timeout || ctx.Err() != nil {
			return lastErr
		}
	}
	return lastErr
}

func (c *Client) attempt(ctx context.Context, path string, body []byte, out any) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return &ConfigError{"cannot build a request for this endpoint"}
	}
	req.Header.Set("Content-Type", "application/json")
	if err := c.signer.Sign(req, body); err != nil {
		return fmt.Errorf("xks client: sign: %w", err)
	}
	status, data, err := c.pool.do(actx, req)
	if err != nil {
		return classifyTransport(err, actx)
	}
	if status != http.StatusOK {
		var e xks.ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.ErrorName != "" {
			return &ProxyError{Name: e.ErrorName, Status: status, Message: e.ErrorMessage}
		}
		return invalid(fmt.Sprintf("HTTP %d without an XKS error body", status))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return invalid("answer is not valid JSON for this API")
	}
	return nil
}
