// Package xksstore is the external key store driver (type
// EXTERNAL_KEY_STORE, Origin EXTERNAL_KEY_STORE): double encryption, as
// AWS KMS does it. keyhold's own material (sealed by the root key, made by
// the default driver) encrypts first, bound to the blob header and the
// encryption context; the external key behind the store's XKS proxy then
// encrypts that result, bound to the blob header. Decryption runs in
// reverse. Every field the proxy returns (IV, tag, ciphertextMetadata,
// ciphertext) is kept in the payload.
//
// It holds the rules AWS documents for external key stores (proxy fields,
// endpoint and VPC endpoint service uniqueness, the endpoint service's
// requirements), the XKS specification's exception wording, one XKS client
// per connected store, and the health checks KMS makes on create, update
// and connect. It never logs or returns a secret or plaintext, and never
// returns the proxy's errorMessage to a caller (it logs it).
package xksstore

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/xks/client"
)

// Connectivity values as AWS spells them.
const (
	PublicEndpoint     = "PUBLIC_ENDPOINT"
	VpcEndpointService = "VPC_ENDPOINT_SERVICE"
	stateDisconnected  = "DISCONNECTED"
	stateConnected     = "CONNECTED"
)

// ErrInnerLayer means the proxy decrypted but keyhold's own layer did not
// authenticate: a wrong encryption context, or a ciphertext of another key.
// It wraps keystore.ErrInvalidCiphertext.
var ErrInnerLayer = fmt.Errorf("xksstore: inner layer: %w", keystore.ErrInvalidCiphertext)

// Config builds a Driver.
type Config struct {
	Region string
	// Inner makes and uses keyhold's own layer (the default driver).
	Inner keystore.Default
	// Services looks VPC endpoint services up (keyhold's store).
	Services VPCEndpointServices
	// RootCAs are the CAs trusted for proxies' TLS certificates, in
	// addition to the system pool; verification is never skipped.
	RootCAs *x509.CertPool
	Logger  *slog.Logger
	// CallTimeout bounds each attempt of a proxy call; 0 is KMS's limit
	// (client.DefaultTimeout, 250 ms). Tests on a busy machine raise it
	// so that only the faults they inject time out.
	CallTimeout time.Duration
}

// Driver implements keystore.Driver for EXTERNAL_KEY_STORE stores. It is
// safe for concurrent use.
type Driver struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex
	clients map[string]*client.Client // custom key store id -> client
}

var _ keystore.Driver = (*Driver)(nil)

// New returns a driver with no connected stores.
func New(cfg Config) *Driver {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{cfg: cfg, log: log, clients: make(map[string]*client.Client)}
}

func (d *Driver) Type() string    { return keystore.TypeExternal }
func (d *Driver) Kind() blob.Kind { return blob.KindXKS }

// attach makes a connected store's client available, replacing the previous
// one, whose idle connections are closed.
func (d *Driver) attach(storeID string, c *client.Client) {
	d.mu.Lock()
	old := d.clients[storeID]
	d.clients[storeID] = c
	d.mu.Unlock()
	if old != nil && old != c {
		old.CloseIdleConnections()
	}
}

func (d *Driver) client(storeID string) (*client.Client, error) {
	d.mu.RLock()
	c := d.clients[storeID]
	d.mu.RUnlock()
	if c == nil {
		return nil, keystore.ErrNotConnected
	}
	return c, nil
}

func newRequestID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return blob.FormatUUID(u)
}

// metadata is the requestMetadata of one proxy call.
func metadata(k keystore.KeyRef, call keystore.Call, def string) client.RequestMetadata {
	md := client.RequestMetadata{KMSKeyARN: k.ARN, KMSOperation: call.Operation, AWSPrincipalARN: call.PrincipalARN, KMSRequestID: call.RequestID}
	if md.KMSOperation == "" {
		md.KMSOperation = def
	}
	if md.AWSPrincipalARN == "" {
		md.AWSPrincipalARN = "AWS Internal"
	}
	if md.KMSRequestID == "" {
		md.KMSRequestID = newRequestID()
	}
	return md
}

func (d *Driver) newClient(cfg keystore.Config, secret, endpoint string) (*client.Client, error) {
	return client.New(client.Config{Endpoint: endpoint, Path: cfg.XksProxyUriPath, AccessKeyID: cfg.XksAccessKeyID,
		SecretAccessKey: secret, Region: d.cfg.Region, RootCAs: d.cfg.RootCAs, Timeout: d.cfg.CallTimeout})
}

// dialEndpoint is where a store's proxy is reached: its XksProxyUriEndpoint,
// or for VPC connectivity the registered endpoint of its service.
func (d *Driver) dialEndpoint(ctx context.Context, account string, cfg keystore.Config) (string, error) {
	if cfg.XksProxyConnectivity != VpcEndpointService {
		return cfg.XksProxyUriEndpoint, nil
	}
	svc, err := d.findVPCEndpointService(ctx, account, cfg)
	if err != nil {
		return "", err
	}
	return svc.Endpoint, nil
}

// probe calls GetHealthStatus with a fresh client, as KMS does on
// CreateCustomKeyStore and UpdateCustomKeyStore.
func (d *Driver) probe(ctx context.Context, call keystore.Call, op string, cfg keystore.Config, secret, endpoint string) error {
	cl, err := d.newClient(cfg, secret, endpoint)
	if err != nil {
		return xksStoreError(err)
	}
	defer cl.CloseIdleConnections()
	reqID := call.RequestID
	if reqID == "" {
		reqID = newRequestID()
	}
	if _, err := cl.Health(ctx, client.RequestMetadata{KMSOperation: op, KMSRequestID: reqID}); err != nil {
		d.log.Info("xks proxy health check failed", "operation", op, "endpoint", endpoint, "path", cfg.XksProxyUriPath, "err", err)
		return xksStoreError(err)
	}
	return nil
}

// validateFields checks presence and combinations; the API model has
// already checked lengths and patterns.
func validateFields(cfg keystore.Config, secret string) error {
	switch {
	case cfg.XksProxyUriEndpoint == "":
		return keystore.Errorf(codeValidation, "XksProxyUriEndpoint is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyUriPath == "":
		return keystore.Errorf(codeValidation, "XksProxyUriPath is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyConnectivity == "":
		return keystore.Errorf(codeValidation, "XksProxyConnectivity is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksAccessKeyID == "" || secret == "":
		return keystore.Errorf(codeValidation, "XksProxyAuthenticationCredential is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyConnectivity != PublicEndpoint && cfg.XksProxyConnectivity != VpcEndpointService:
		return keystore.Errorf(codeValidation, "1 validation error detected: Value '%s' at 'xksProxyConnectivity' failed to satisfy constraint: Member must satisfy enum value set: [PUBLIC_ENDPOINT, VPC_ENDPOINT_SERVICE]", cfg.XksProxyConnectivity)
	case cfg.XksProxyConnectivity == VpcEndpointService && cfg.XksProxyVpcEndpointServiceName == "":
		return keystore.Errorf(codeValidation, "XksProxyVpcEndpointServiceName is required when XksProxyConnectivity is VPC_ENDPOINT_SERVICE.")
	case cfg.XksProxyConnectivity == PublicEndpoint && (cfg.XksProxyVpcEndpointServiceName != "" || cfg.XksProxyVpcEndpointServiceOwner != ""):
		return keystore.Errorf(codeValidation, "XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner are valid only when XksProxyConnectivity is VPC_ENDPOINT_SERVICE.")
	case !strings.HasPrefix(strings.ToLower(cfg.XksProxyUriEndpoint), "https://"):
		return keystore.Errorf(codeValidation, "XksProxyUriEndpoint must begin with https://.")
	}
	return nil
}

// checkUnique applies the uniqueness rules to cfg, a store of account
// (self is its id when updating), against the Region's external key stores.
func checkUnique(account, self string, cfg keystore.Config, others []keystore.Store) error {
	ep := strings.ToLower(cfg.XksProxyUriEndpoint)
	for _, o := range others {
		if o.Type != keystore.TypeExternal || (o.ID == self && o.AccountID == account) {
			continue
		}
		oep := strings.ToLower(o.Config.XksProxyUriEndpoint)
		same := o.AccountID == account
		switch {
		case same && oep == ep && o.Config.XksProxyUriPath == cfg.XksProxyUriPath:
			return keystore.Errorf(codeXksProxyUriInUse, "The combination of XksProxyUriEndpoint %s and XksProxyUriPath %s is already used by custom key store %s in this account and Region.", cfg.XksProxyUriEndpoint, cfg.XksProxyUriPath, o.ID)
		case oep == ep && o.Config.XksProxyConnectivity != cfg.XksProxyConnectivity:
			return keystore.Errorf(codeXksProxyUriEndpointInUse, "XksProxyUriEndpoint %s is already used by an external key store with %s connectivity in this Region.", cfg.XksProxyUriEndpoint, o.Config.XksProxyConnectivity)
		case same && oep == ep && cfg.XksProxyConnectivity == VpcEndpointService:
			return keystore.Errorf(codeXksProxyUriEndpointInUse, "XksProxyUriEndpoint %s is already used by custom key store %s: each external key store with VPC_ENDPOINT_SERVICE connectivity needs its own private DNS name.", cfg.XksProxyUriEndpoint, o.ID)
		case cfg.XksProxyConnectivity == VpcEndpointService && o.Config.XksProxyConnectivity == VpcEndpointService &&
			o.Config.XksProxyVpcEndpointServiceName == cfg.XksProxyVpcEndpointServiceName:
			return keystore.Errorf(codeVpcEndpointSvcInUse, "VPC endpoint service %s is already associated with another external key store in this Region.", cfg.XksProxyVpcEndpointServiceName)
		}
	}
	return nil
}

func val(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Validate applies the local rules of CreateCustomKeyStore and
// UpdateCustomKeyStore (fields, uniqueness, the VPC endpoint service);
// Probe then contacts the proxy.
func (d *Driver) Validate(ctx context.Context, ch keystore.Change) (keystore.Validated, error) {
	g := ch.Given
	if ch.Current == nil {
		if val(g.CloudHsmClusterID) != "" || val(g.TrustAnchorCertificate) != "" || val(g.KeyStorePassword) != "" {
			return keystore.Validated{}, keystore.Errorf(codeValidation, "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword are not valid for a custom key store of type EXTERNAL_KEY_STORE.")
		}
		cfg := keystore.Config{XksProxyUriEndpoint: val(g.XksProxyUriEndpoint), XksProxyUriPath: val(g.XksProxyUriPath),
			XksProxyConnectivity: val(g.XksProxyConnectivity), XksProxyVpcEndpointServiceName: val(g.XksProxyVpcEndpointServiceName),
			XksProxyVpcEndpointServiceOwner: val(g.XksProxyVpcEndpointServiceOwner), XksAccessKeyID: val(g.XksAccessKeyID)}
		sec := keystore.Secret{XksSecretAccessKey: val(g.XksSecretAccessKey)}
		if err := validateFields(cfg, sec.XksSecretAccessKey); err != nil {
			return keystore.Validated{}, err
		}
		return keystore.Validated{Config: cfg, Secret: sec}, nil
	}
	if g.KeyStorePassword != nil || g.CloudHsmClusterID != nil {
		return keystore.Validated{}, keystore.Errorf(codeValidation, "KeyStorePassword and CloudHsmClusterId are not valid for a custom key store of type EXTERNAL_KEY_STORE.")
	}
	if (g.XksAccessKeyID == nil) != (g.XksSecretAccessKey == nil) {
		return keystore.Validated{}, keystore.Errorf(codeValidation, "XksProxyAuthenticationCredential needs both AccessKeyId and RawSecretAccessKey.")
	}
	cur := ch.Current.Config
	next, secret := cur, ch.Current.Secret.XksSecretAccessKey
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&next.XksProxyUriEndpoint, g.XksProxyUriEndpoint)
	set(&next.XksProxyUriPath, g.XksProxyUriPath)
	set(&next.XksProxyConnectivity, g.XksProxyConnectivity)
	set(&next.XksProxyVpcEndpointServiceName, g.XksProxyVpcEndpointServiceName)
	set(&next.XksProxyVpcEndpointServiceOwner, g.XksProxyVpcEndpointServiceOwner)
	set(&next.XksAccessKeyID, g.XksAccessKeyID)
	set(&secret, g.XksSecretAccessKey)

	if next.XksProxyConnectivity != cur.XksProxyConnectivity {
		if strings.EqualFold(next.XksProxyUriEndpoint, cur.XksProxyUriEndpoint) {
			return keystore.Validated{}, keystore.Errorf(codeValidation, "To change XksProxyConnectivity, also specify a new XksProxyUriEndpoint.")
		}
		if next.XksProxyConnectivity == PublicEndpoint {
			// Switching to a public endpoint drops the VPC endpoint service.
			if val(g.XksProxyVpcEndpointServiceName) != "" {
				return keystore.Validated{}, keystore.Errorf(codeValidation, "XksProxyVpcEndpointServiceName must be empty when XksProxyConnectivity is PUBLIC_ENDPOINT.")
			}
			next.XksProxyVpcEndpointServiceName, next.XksProxyVpcEndpointServiceOwner = "", ""
		} else if g.XksProxyVpcEndpointServiceName == nil {
			return keystore.Validated{}, keystore.Errorf(codeValidation, "To change XksProxyConnectivity to VPC_ENDPOINT_SERVICE, also specify XksProxyVpcEndpointServiceName.")
		}
	}
	restricted := !strings.EqualFold(next.XksProxyUriEndpoint, cur.XksProxyUriEndpoint) ||
		next.XksProxyConnectivity != cur.XksProxyConnectivity ||
		next.XksProxyVpcEndpointServiceName != cur.XksProxyVpcEndpointServiceName ||
		next.XksProxyVpcEndpointServiceOwner != cur.XksProxyVpcEndpointServiceOwner
	if restricted && ch.State != stateDisconnected {
		return keystore.Validated{}, keystore.Errorf(codeStoreInvalidState, "Custom key store %s is %s; only its name, XksProxyAuthenticationCredential and XksProxyUriPath can change while it is %s; disconnect it to change the endpoint, connectivity or VPC endpoint service.", ch.ID, ch.State, ch.State)
	}
	if err := validateFields(next, secret); err != nil {
		return keystore.Validated{}, err
	}
	sec := ch.Current.Secret
	sec.XksSecretAccessKey = secret
	changed := restricted || next.XksProxyUriPath != cur.XksProxyUriPath || next.XksAccessKeyID != cur.XksAccessKeyID || secret != ch.Current.Secret.XksSecretAccessKey
	if !changed {
		return keystore.Validated{Config: cur, Secret: ch.Current.Secret}, nil
	}
	if err := checkUnique(ch.AccountID, ch.ID, next, ch.Others); err != nil {
		return keystore.Validated{}, err
	}
	if next.XksProxyConnectivity == VpcEndpointService {
		if _, err := d.findVPCEndpointService(ctx, ch.AccountID, next); err != nil {
			return keystore.Validated{}, err
		}
	}
	return keystore.Validated{Config: next, Secret: sec, Live: ch.State == stateConnected}, nil
}

// Probe applies the Region-wide rules and contacts the proxy: on create
// with a public endpoint (a VPC one is first reached at connect), on an
// update that changes the connection of a public store or of a connected
// one.
func (d *Driver) Probe(ctx context.Context, ch keystore.Change, v keystore.Validated) error {
	cfg := v.Config
	if ch.Current == nil {
		if err := checkUnique(ch.AccountID, "", cfg, ch.Others); err != nil {
			return err
		}
		if cfg.XksProxyConnectivity == VpcEndpointService {
			// KMS checks the endpoint service now and reaches the proxy
			// through it first at ConnectCustomKeyStore.
			_, err := d.findVPCEndpointService(ctx, ch.AccountID, cfg)
			return err
		}
		return d.probe(ctx, ch.Call, "CreateCustomKeyStore", cfg, v.Secret.XksSecretAccessKey, cfg.XksProxyUriEndpoint)
	}
	cur := ch.Current.Config
	if cfg == cur && v.Secret.XksSecretAccessKey == ch.Current.Secret.XksSecretAccessKey {
		return nil
	}
	if cfg.XksProxyConnectivity != PublicEndpoint && ch.State != stateConnected {
		return nil
	}
	endpoint, err := d.dialEndpoint(ctx, ch.AccountID, cfg)
	if err != nil {
		return err
	}
	return d.probe(ctx, ch.Call, "UpdateCustomKeyStore", cfg, v.Secret.XksSecretAccessKey, endpoint)
}

// CheckConnect raises nothing at once: every problem is a
// ConnectionErrorCode.
func (d *Driver) CheckConnect(context.Context, keystore.Store) error { return nil }

// Connect checks the VPC endpoint service (for VPC connectivity) and the
// proxy's health, then keeps the client.
func (d *Driver) Connect(ctx context.Context, s keystore.Store, _ keystore.SaveSecret) error {
	endpoint, err := d.dialEndpoint(ctx, s.AccountID, s.Config)
	if err != nil {
		d.log.Info("xks connect: VPC endpoint service", "store", s.ID, "err", err)
		return &keystore.ConnectError{Code: vpceConnectionCode(err), Cause: err}
	}
	cl, err := d.newClient(s.Config, s.Secret.XksSecretAccessKey, endpoint)
	if err != nil {
		return &keystore.ConnectError{Code: client.ConnectionErrorCode(err), Cause: err}
	}
	if _, err := cl.Health(ctx, client.RequestMetadata{KMSOperation: "ConnectCustomKeyStore", KMSRequestID: newRequestID()}); err != nil {
		cl.CloseIdleConnections()
		code := client.ConnectionErrorCode(err)
		d.log.Info("xks connect: proxy health check failed", "store", s.ID, "code", code, "err", err)
		return &keystore.ConnectError{Code: code, Cause: err}
	}
	d.attach(s.ID, cl)
	return nil
}

// Reconfigure gives a connected store a client with its new settings.
func (d *Driver) Reconfigure(ctx context.Context, s keystore.Store) error {
	endpoint, err := d.dialEndpoint(ctx, s.AccountID, s.Config)
	if err == nil {
		var cl *client.Client
		if cl, err = d.newClient(s.Config, s.Secret.XksSecretAccessKey, endpoint); err == nil {
			d.attach(s.ID, cl)
			return nil
		}
	}
	d.log.Error("xks: applying an update to a connected store failed", "store", s.ID, "err", err)
	return err
}

// Disconnect drops the store's client.
func (d *Driver) Disconnect(_ context.Context, s keystore.Store) error {
	d.mu.Lock()
	cl := d.clients[s.ID]
	delete(d.clients, s.ID)
	d.mu.Unlock()
	if cl != nil {
		cl.CloseIdleConnections()
	}
	return nil
}

// CreateKey checks the external key with GetKeyMetadata and gives the new
// KMS key its own material (the inner layer of the double encryption).
// The domain has checked that no other key of the store uses k.XksKeyID
// (and its store's UNIQUE constraint settles a race).
func (d *Driver) CreateKey(ctx context.Context, s keystore.Store, k keystore.KeyRef, call keystore.Call) (keystore.Material, error) {
	if k.XksKeyID == "" {
		return keystore.Material{}, keystore.Errorf(codeValidation, "XksKeyId is required when Origin is EXTERNAL_KEY_STORE.")
	}
	cl, err := d.client(s.ID)
	if err != nil {
		return keystore.Material{}, keystore.Errorf(codeStoreInvalidState, "%s", xksMsgNotConnected)
	}
	md := metadata(k, call, "CreateKey")
	meta, err := Retry(ctx, func() (client.KeyMetadata, error) { return cl.KeyMetadata(ctx, k.XksKeyID, md) })
	if err == nil {
		err = client.CheckKeyMetadata(meta)
	}
	if err != nil {
		d.log.Info("xks CreateKey: external key refused", "store", s.ID, "xksKeyId", k.XksKeyID, "err", err)
		return keystore.Material{}, xksCreateKeyError(k.XksKeyID, err)
	}
	return d.cfg.Inner.NewMaterial(k.ID)
}

// DestroyKey has nothing to destroy: the external key is never touched and
// the inner material goes with the key record.
func (d *Driver) DestroyKey(_ context.Context, k keystore.KeyRef) error {
	d.cfg.Inner.Forget(k.ID)
	return nil
}

// Health calls the proxy's GetHealthStatus with the store's client (the
// periodic checks KMS makes).
func (d *Driver) Health(ctx context.Context, storeID string) error {
	cl, err := d.client(storeID)
	if err != nil {
		return &keystore.ConnectError{Code: "INTERNAL_ERROR", Cause: err}
	}
	md := client.RequestMetadata{KMSOperation: "KmsHealthCheck", KMSRequestID: newRequestID()}
	if _, err := Retry(ctx, func() (client.HealthStatus, error) { return cl.Health(ctx, md) }); err != nil {
		return &keystore.ConnectError{Code: client.ConnectionErrorCode(err), Cause: err}
	}
	return nil
}

// Unavailable is the message for a key whose proxy cannot serve it.
func (d *Driver) Unavailable(keystore.KeyRef) string { return xksMsgNotConnected }

// ProxyAAD is the additional authenticated data sent to the proxy: the
// 34-byte blob header (key id and material id), as AWS sends its
// ciphertext blob header. The encryption context is bound by the inner
// layer only, so a wrong context fails as an invalid ciphertext in keyhold,
// not at the proxy.
func ProxyAAD(aad []byte) []byte {
	if len(aad) < blob.HeaderLen {
		return aad
	}
	return aad[:blob.HeaderLen]
}

// cryptoErr keeps "invalid ciphertext" (keyhold's own layer, or a payload
// that does not parse) as it is and makes every proxy failure
// KMSInvalidStateException with the specification's message.
func (d *Driver) cryptoErr(k keystore.KeyRef, err error) error {
	if errors.Is(err, keystore.ErrInvalidCiphertext) {
		return err
	}
	var pe *client.ProxyError
	if errors.As(err, &pe) {
		// The proxy's errorMessage is for the operator's log, never the caller.
		d.log.Warn("xks proxy error", "store", k.CustomKeyStoreID, "key", k.ARN, "errorName", pe.Name, "status", pe.Status, "errorMessage", pe.Message)
	} else if !errors.Is(err, keystore.ErrNotConnected) {
		d.log.Warn("xks proxy call failed", "store", k.CustomKeyStoreID, "key", k.ARN, "err", err)
	}
	return xksCryptoError(err)
}

// Encrypt returns fields(iv, tag, ciphertextMetadata, proxy ciphertext),
// where the proxy ciphertext encrypts keyhold's inner payload
// (iv || ciphertext || tag under the key's own material).
func (d *Driver) Encrypt(ctx context.Context, k keystore.KeyRef, call keystore.Call, plaintext, aad []byte) ([]byte, error) {
	c, err := d.client(k.CustomKeyStoreID)
	if err != nil {
		return nil, d.cryptoErr(k, err)
	}
	inner, err := d.cfg.Inner.Encrypt(ctx, k, call, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("xksstore.Encrypt: inner layer: %w", err)
	}
	md := metadata(k, call, "Encrypt")
	res, err := Retry(ctx, func() (client.EncryptResult, error) {
		return c.Encrypt(ctx, k.XksKeyID, md, inner, ProxyAAD(aad))
	})
	if err != nil {
		return nil, d.cryptoErr(k, err)
	}
	return blob.Fields(res.IV, res.AuthTag, res.CiphertextMetadata, res.Ciphertext), nil
}

// Decrypt asks the proxy to remove the outer layer, then opens the inner one.
func (d *Driver) Decrypt(ctx context.Context, k keystore.KeyRef, call keystore.Call, payload, aad []byte) ([]byte, error) {
	f, err := blob.SplitFields(payload, 4)
	if err != nil {
		return nil, keystore.ErrInvalidCiphertext
	}
	iv, tag, md, ct := f[0], f[1], f[2], f[3]
	if len(md) == 0 {
		md = nil
	}
	c, err := d.client(k.CustomKeyStoreID)
	if err != nil {
		return nil, d.cryptoErr(k, err)
	}
	rmd := metadata(k, call, "Decrypt")
	inner, err := Retry(ctx, func() ([]byte, error) {
		return c.Decrypt(ctx, k.XksKeyID, rmd, ct, iv, tag, ProxyAAD(aad), md)
	})
	if err != nil {
		return nil, d.cryptoErr(k, err)
	}
	defer clear(inner)
	pt, err := d.cfg.Inner.Decrypt(ctx, k, call, inner, aad)
	if err != nil {
		if errors.Is(err, keystore.ErrInvalidCiphertext) {
			return nil, ErrInnerLayer
		}
		return nil, fmt.Errorf("xksstore.Decrypt: inner layer: %w", err)
	}
	return pt, nil
}

// Retry runs call again once when it failed below HTTP without a timeout
// (a reset or a broken pipe on a pooled connection the proxy closed, e.g.
// across a proxy restart; a refused connection fails fast again). The
// client itself retries timeouts.
func Retry[T any](ctx context.Context, call func() (T, error)) (T, error) {
	v, err := call()
	var te *client.TransportError
	if err != nil && errors.As(err, &te) && te.Kind == client.Unreachable && ctx.Err() == nil {
		return call()
	}
	return v, err
}
