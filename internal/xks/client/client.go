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
	"strconv"
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
	host   string // the Host header: the endpoint's host[:port] as written
	path   string // cfg.Path
	pool   *connPool
	signer *sigv4.Signer
}

var pathRE = regexp.MustCompile(`^(/[a-zA-Z0-9/_-]+)?/kms/xks/v\d{1,2}$`)

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
		host:   u.Host,
		path:   cfg.Path,
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
	if err := c.callJSON(ctx, "/health", xks.HealthRequest{RequestMetadata: wireMetadata(md, "health")}, &out); err != nil {
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
	if !validKeyID(keyID) {
		return "", &ConfigError{"external key id must be 1-128 chars of [A-Za-z0-9-._]"}
	}
	return "/keys/" + keyID + "/" + op, nil
}

// validKeyID: 1-128 of [A-Za-z0-9._-] (an external key id; safe in a path
// as it is).
func validKeyID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// KeyMetadata calls GetKeyMetadata. It does not judge the answer; see
// CheckKeyMetadata for what CreateKey requires.
func (c *Client) KeyMetadata(ctx context.Context, keyID string, md RequestMetadata) (KeyMetadata, error) {
	p, err := keyPath(keyID, "metadata")
	if err != nil {
		return KeyMetadata{}, err
	}
	var out xks.MetadataResponse
	if err := c.callJSON(ctx, p, xks.MetadataRequest{RequestMetadata: wireMetadata(md, "metadata")}, &out); err != nil {
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
	body := appendEncryptRequest(make([]byte, 0, 384+(len(plaintext)+len(aad))*4/3), &in)
	if err := c.call(ctx, p, body, func(data []byte) error { return decodeEncryptResponse(data, &out) }); err != nil {
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
	body := appendDecryptRequest(make([]byte, 0, 448+(len(ciphertext)+len(aad))*4/3), &in)
	if err := c.call(ctx, p, body, func(data []byte) error { return decodeDecryptResponse(data, &out) }); err != nil {
		return nil, err
	}
	if out.Plaintext == nil || len(out.Plaintext) != len(ciphertext) {
		return nil, invalid("plaintext is missing or has the wrong length")
	}
	return out.Plaintext, nil
}

// callJSON is call with encoding/json both ways.
func (c *Client) callJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("xks client: %w", err)
	}
	return c.call(ctx, path, body, func(data []byte) error { return json.Unmarshal(data, out) })
}

// call POSTs body to path and decodes a 200 answer with decode, retrying
// once when an attempt times out at the network level.
func (c *Client) call(ctx context.Context, path string, body []byte, decode func([]byte) error) error {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		lastErr = c.attempt(ctx, path, body, decode)
		var te *TransportError
		if lastErr == nil || !errors.As(lastErr, &te) || te.Kind != Timeout || ctx.Err() != nil {
			return lastErr
		}
	}
	return lastErr
}

// signedContentType is the header signed besides host and x-amz-date.
var signedContentType = []sigv4.Header{{Name: "content-type", Value: "application/json"}}

// attempt makes one call within the per-attempt limit. The request is
// written as net/http's Request.Write would write it (the same headers in
// the same order), without building an http.Request.
func (c *Client) attempt(ctx context.Context, path string, body []byte, decode func([]byte) error) error {
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	amzDate, auth, err := c.signer.SignParts(http.MethodPost, c.host, c.path+path, signedContentType, body)
	if err != nil {
		return fmt.Errorf("xks client: sign: %w", err)
	}
	req := make([]byte, 0, 400+len(c.host)+len(c.path)+len(path)+len(auth)+len(body))
	req = append(req, "POST "...)
	req = append(req, c.path...)
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, c.host...)
	req = append(req, "\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\nAuthorization: "...)
	req = append(req, auth...)
	req = append(req, "\r\nContent-Type: application/json\r\nX-Amz-Date: "...)
	req = append(req, amzDate...)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	status, data, err := c.pool.do(ctx, deadline, req)
	if err != nil {
		return classifyTransport(err, !time.Now().Before(deadline))
	}
	if status != http.StatusOK {
		var e xks.ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.ErrorName != "" {
			return &ProxyError{Name: e.ErrorName, Status: status, Message: e.ErrorMessage}
		}
		return invalid(fmt.Sprintf("HTTP %d without an XKS error body", status))
	}
	if err := decode(data); err != nil {
		return invalid("answer is not valid JSON for this API")
	}
	return nil
}
