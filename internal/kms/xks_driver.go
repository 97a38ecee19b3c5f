package kms

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/xks/client"
)

// XKS connectivity values as AWS spells them.
const (
	XksPublicEndpoint      = "PUBLIC_ENDPOINT"
	XksVpcEndpointService  = "VPC_ENDPOINT_SERVICE"
	defaultXKSHealthPeriod = 3 * time.Minute
)

// xksDrv is the external key store driver: field rules and uniqueness,
// proxy health checks on create, update and connect, the clients of
// connected stores (in the xksstore backend), periodic health checks, and
// CreateKey's GetKeyMetadata.
type xksDrv struct {
	s     *Service
	opts  XKSOptions
	store *xksstore.Backend

	period      atomic.Int64 // health check interval, ns
	monitorOnce sync.Once

	mu     sync.Mutex
	health map[string]xksHealth // store id -> last periodic check
}

type xksHealth struct {
	code string // "" = healthy, else a ConnectionErrorCode
	at   time.Time
}

func newXKS(s *Service, o XKSOptions) *xksDrv {
	d := &xksDrv{s: s, opts: o, health: map[string]xksHealth{}}
	d.period.Store(int64(defaultXKSHealthPeriod))
	d.store = xksstore.New(s.soft, d.metadata)
	return d
}

// backend is the keystore.Backend registered for blob.KindXKS: the
// xksstore backend, with proxy failures turned into KMS exceptions.
func (d *xksDrv) backend() keystore.Backend { return xksBackend{d} }

type xksBackend struct{ d *xksDrv }

func (b xksBackend) Kind() blob.Kind { return blob.KindXKS }

func (b xksBackend) Encrypt(ctx context.Context, k keystore.KeyRef, plaintext, aad []byte) ([]byte, error) {
	out, err := b.d.store.Encrypt(ctx, k, plaintext, aad)
	if err != nil {
		return nil, b.d.cryptoErr(k, err)
	}
	return out, nil
}

func (b xksBackend) Decrypt(ctx context.Context, k keystore.KeyRef, payload, aad []byte) ([]byte, error) {
	pt, err := b.d.store.Decrypt(ctx, k, payload, aad)
	if err != nil {
		return nil, b.d.cryptoErr(k, err)
	}
	return pt, nil
}

// cryptoErr keeps "invalid ciphertext" (keyhold's own layer, or a payload
// that does not parse) as it is and makes every proxy failure
// KMSInvalidStateException.
func (d *xksDrv) cryptoErr(k keystore.KeyRef, err error) error {
	if errors.Is(err, keystore.ErrInvalidCiphertext) {
		return err
	}
	var pe *client.ProxyError
	if errors.As(err, &pe) {
		// The proxy's errorMessage is for the operator's log, never the caller.
		d.s.log.Warn("xks proxy error", "store", k.CustomKeyStoreID, "key", k.ARN, "errorName", pe.Name, "status", pe.Status, "errorMessage", pe.Message)
	} else if !errors.Is(err, xksstore.ErrNotConnected) {
		d.s.log.Warn("xks proxy call failed", "store", k.CustomKeyStoreID, "key", k.ARN, "err", err)
	}
	return xksCryptoError(err)
}

// metadata builds the requestMetadata of a crypto call from the caller and
// the operation in ctx.
func (d *xksDrv) metadata(ctx context.Context, k keystore.KeyRef, api xksstore.API) client.RequestMetadata {
	def := "Encrypt"
	if api == xksstore.APIDecrypt {
		def = "Decrypt"
	}
	md := client.RequestMetadata{KMSKeyARN: k.ARN, KMSOperation: operationFrom(ctx, def)}
	if c, ok := CallerFrom(ctx); ok {
		md.AWSPrincipalARN, md.KMSRequestID = c.ARN, c.RequestID
	}
	if md.AWSPrincipalARN == "" {
		md.AWSPrincipalARN = "AWS Internal"
	}
	if md.KMSRequestID == "" {
		md.KMSRequestID = newRequestID()
	}
	return md
}

func newRequestID() string {
	id, err := newKeyID()
	if err != nil {
		var u [16]byte
		rand.Read(u[:])
		return blob.FormatUUID(u)
	}
	return id
}

func (d *xksDrv) newClient(cfg cksConfig, secret, endpoint string) (*client.Client, error) {
	return client.New(client.Config{Endpoint: endpoint, Path: cfg.XksProxyUriPath, AccessKeyID: cfg.XksAccessKeyID,
		SecretAccessKey: secret, Region: d.s.region, RootCAs: d.opts.RootCAs})
}

// dialEndpoint is where a store's proxy is reached: its XksProxyUriEndpoint,
// or for VPC connectivity the registered endpoint of its service.
func (d *xksDrv) dialEndpoint(ctx context.Context, account string, cfg cksConfig) (string, error) {
	if cfg.XksProxyConnectivity != XksVpcEndpointService {
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
func (d *xksDrv) probe(ctx context.Context, caller Caller, op string, cfg cksConfig, secret, endpoint string) error {
	cl, err := d.newClient(cfg, secret, endpoint)
	if err != nil {
		return xksStoreError(err)
	}
	defer cl.CloseIdleConnections()
	reqID := caller.RequestID
	if reqID == "" {
		reqID = newRequestID()
	}
	if _, err := cl.Health(ctx, client.RequestMetadata{KMSOperation: op, KMSRequestID: reqID}); err != nil {
		d.s.log.Info("xks proxy health check failed", "operation", op, "endpoint", endpoint, "path", cfg.XksProxyUriPath, "err", err)
		return xksStoreError(err)
	}
	return nil
}

// validateXKSFields checks presence and combinations; the model has
// already checked lengths and patterns.
func validateXKSFields(cfg cksConfig, secret string) error {
	switch {
	case cfg.XksProxyUriEndpoint == "":
		return errorf(Validation, "XksProxyUriEndpoint is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyUriPath == "":
		return errorf(Validation, "XksProxyUriPath is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyConnectivity == "":
		return errorf(Validation, "XksProxyConnectivity is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksAccessKeyID == "" || secret == "":
		return errorf(Validation, "XksProxyAuthenticationCredential is required for a custom key store of type EXTERNAL_KEY_STORE.")
	case cfg.XksProxyConnectivity != XksPublicEndpoint && cfg.XksProxyConnectivity != XksVpcEndpointService:
		return errorf(Validation, "1 validation error detected: Value '%s' at 'xksProxyConnectivity' failed to satisfy constraint: Member must satisfy enum value set: [PUBLIC_ENDPOINT, VPC_ENDPOINT_SERVICE]", cfg.XksProxyConnectivity)
	case cfg.XksProxyConnectivity == XksVpcEndpointService && cfg.XksProxyVpcEndpointServiceName == "":
		return errorf(Validation, "XksProxyVpcEndpointServiceName is required when XksProxyConnectivity is VPC_ENDPOINT_SERVICE.")
	case cfg.XksProxyConnectivity == XksPublicEndpoint && (cfg.XksProxyVpcEndpointServiceName != "" || cfg.XksProxyVpcEndpointServiceOwner != ""):
		return errorf(Validation, "XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner are valid only when XksProxyConnectivity is VPC_ENDPOINT_SERVICE.")
	case !strings.HasPrefix(strings.ToLower(cfg.XksProxyUriEndpoint), "https://"):
		return errorf(Validation, "XksProxyUriEndpoint must begin with https://.")
	}
	return nil
}

// xksRecord is one existing external key store, for the uniqueness rules.
type xksRecord struct {
	account, id string
	cfg         cksConfig
}

// regionStores lists the external key stores of every account (the
// endpoint and VPC endpoint service rules hold across the Region).
func (d *xksDrv) regionStores(ctx context.Context, account string, all []store.CustomKeyStore) ([]xksRecord, error) {
	var out []xksRecord
	add := func(rs []store.CustomKeyStore) {
		for _, r := range rs {
			if r.Type == TypeXKS {
				out = append(out, xksRecord{account: r.AccountID, id: r.ID, cfg: d.s.cks.config(r)})
			}
		}
	}
	add(all)
	accts, err := d.s.st.ListAccounts(ctx)
	if err != nil {
		return nil, internal("ListAccounts", err)
	}
	for _, a := range accts {
		if a.ID == account {
			continue
		}
		rs, err := d.s.st.ListCustomKeyStores(ctx, a.ID)
		if err != nil {
			return nil, internal("ListCustomKeyStores", err)
		}
		add(rs)
	}
	return out, nil
}

// checkUnique applies the uniqueness rules to cfg, a store of account
// (self is its id when updating).
func (d *xksDrv) checkUnique(account, self string, cfg cksConfig, others []xksRecord) error {
	ep := strings.ToLower(cfg.XksProxyUriEndpoint)
	for _, o := range others {
		if o.id == self && o.account == account {
			continue
		}
		oep := strings.ToLower(o.cfg.XksProxyUriEndpoint)
		same := o.account == account
		switch {
		case same && oep == ep && o.cfg.XksProxyUriPath == cfg.XksProxyUriPath:
			return errorf(XksProxyUriInUse, "The combination of XksProxyUriEndpoint %s and XksProxyUriPath %s is already used by custom key store %s in this account and Region.", cfg.XksProxyUriEndpoint, cfg.XksProxyUriPath, o.id)
		case oep == ep && o.cfg.XksProxyConnectivity != cfg.XksProxyConnectivity:
			return errorf(XksProxyUriEndpointInUse, "XksProxyUriEndpoint %s is already used by an external key store with %s connectivity in this Region.", cfg.XksProxyUriEndpoint, o.cfg.XksProxyConnectivity)
		case same && oep == ep && cfg.XksProxyConnectivity == XksVpcEndpointService:
			return errorf(XksProxyUriEndpointInUse, "XksProxyUriEndpoint %s is already used by custom key store %s: each external key store with VPC_ENDPOINT_SERVICE connectivity needs its own private DNS name.", cfg.XksProxyUriEndpoint, o.id)
		case cfg.XksProxyConnectivity == XksVpcEndpointService && o.cfg.XksProxyConnectivity == XksVpcEndpointService &&
			o.cfg.XksProxyVpcEndpointServiceName == cfg.XksProxyVpcEndpointServiceName:
			return errorf(XksProxyVpcEndpointSvcInUse, "VPC endpoint service %s is already associated with another external key store in this Region.", cfg.XksProxyVpcEndpointServiceName)
		}
	}
	return nil
}

func (d *xksDrv) validateCreate(ctx context.Context, caller Caller, in CreateCustomKeyStoreInput, all []store.CustomKeyStore) (cksConfig, cksSecret, error) {
	if in.CloudHsmClusterID != "" || in.TrustAnchorCertificate != "" || in.KeyStorePassword != "" {
		return cksConfig{}, cksSecret{}, errorf(Validation, "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword are not valid for a custom key store of type EXTERNAL_KEY_STORE.")
	}
	cfg := cksConfig{XksProxyUriEndpoint: in.XksProxyUriEndpoint, XksProxyUriPath: in.XksProxyUriPath,
		XksProxyConnectivity: in.XksProxyConnectivity, XksProxyVpcEndpointServiceName: in.XksProxyVpcEndpointServiceName,
		XksProxyVpcEndpointServiceOwner: in.XksProxyVpcEndpointServiceOwner, XksAccessKeyID: in.XksAccessKeyID}
	sec := cksSecret{XksSecretAccessKey: in.XksSecretAccessKey}
	if err := validateXKSFields(cfg, sec.XksSecretAccessKey); err != nil {
		return cksConfig{}, cksSecret{}, err
	}
	// Local rules first: a name or quota problem should not wait for a proxy.
	for _, r := range all {
		if r.Name == in.Name {
			return cksConfig{}, cksSecret{}, nameInUse(in.Name)
		}
	}
	if len(all) >= maxCustomKeyStores {
		return cksConfig{}, cksSecret{}, errorf(LimitExceeded, "This account has the maximum of %d custom key stores in this Region.", maxCustomKeyStores)
	}
	others, err := d.regionStores(ctx, caller.AccountID, all)
	if err != nil {
		return cksConfig{}, cksSecret{}, err
	}
	if err := d.checkUnique(caller.AccountID, "", cfg, others); err != nil {
		return cksConfig{}, cksSecret{}, err
	}
	if cfg.XksProxyConnectivity == XksVpcEndpointService {
		// KMS checks the endpoint service now and reaches the proxy through
		// it first at ConnectCustomKeyStore.
		if _, err := d.findVPCEndpointService(ctx, caller.AccountID, cfg); err != nil {
			return cksConfig{}, cksSecret{}, err
		}
		return cfg, sec, nil
	}
	if err := d.probe(ctx, caller, "CreateCustomKeyStore", cfg, sec.XksSecretAccessKey, cfg.XksProxyUriEndpoint); err != nil {
		return cksConfig{}, cksSecret{}, err
	}
	return cfg, sec, nil
}

func (d *xksDrv) update(ctx context.Context, caller Caller, rec store.CustomKeyStore, in UpdateCustomKeyStoreInput, state string, cfg *cksConfig, sec *cksSecret, all []store.CustomKeyStore) (bool, error) {
	if in.KeyStorePassword != nil || in.CloudHsmClusterID != nil {
		return false, errorf(Validation, "KeyStorePassword and CloudHsmClusterId are not valid for a custom key store of type EXTERNAL_KEY_STORE.")
	}
	if (in.XksAccessKeyID == nil) != (in.XksSecretAccessKey == nil) {
		return false, errorf(Validation, "XksProxyAuthenticationCredential needs both AccessKeyId and RawSecretAccessKey.")
	}
	next, secret := *cfg, sec.XksSecretAccessKey
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&next.XksProxyUriEndpoint, in.XksProxyUriEndpoint)
	set(&next.XksProxyUriPath, in.XksProxyUriPath)
	set(&next.XksProxyConnectivity, in.XksProxyConnectivity)
	set(&next.XksProxyVpcEndpointServiceName, in.XksProxyVpcEndpointServiceName)
	set(&next.XksProxyVpcEndpointServiceOwner, in.XksProxyVpcEndpointServiceOwner)
	set(&next.XksAccessKeyID, in.XksAccessKeyID)
	set(&secret, in.XksSecretAccessKey)

	if next.XksProxyConnectivity != cfg.XksProxyConnectivity {
		if strings.EqualFold(next.XksProxyUriEndpoint, cfg.XksProxyUriEndpoint) {
			return false, errorf(Validation, "To change XksProxyConnectivity, also specify a new XksProxyUriEndpoint.")
		}
		if next.XksProxyConnectivity == XksPublicEndpoint {
			// Switching to a public endpoint drops the VPC endpoint service.
			if in.XksProxyVpcEndpointServiceName != nil && *in.XksProxyVpcEndpointServiceName != "" {
				return false, errorf(Validation, "XksProxyVpcEndpointServiceName must be empty when XksProxyConnectivity is PUBLIC_ENDPOINT.")
			}
			next.XksProxyVpcEndpointServiceName, next.XksProxyVpcEndpointServiceOwner = "", ""
		} else if in.XksProxyVpcEndpointServiceName == nil {
			return false, errorf(Validation, "To change XksProxyConnectivity to VPC_ENDPOINT_SERVICE, also specify XksProxyVpcEndpointServiceName.")
		}
	}
	restricted := !strings.EqualFold(next.XksProxyUriEndpoint, cfg.XksProxyUriEndpoint) ||
		next.XksProxyConnectivity != cfg.XksProxyConnectivity ||
		next.XksProxyVpcEndpointServiceName != cfg.XksProxyVpcEndpointServiceName ||
		next.XksProxyVpcEndpointServiceOwner != cfg.XksProxyVpcEndpointServiceOwner
	if restricted && state != Disconnected {
		return false, invalidState(in.ID, state, "only its name, XksProxyAuthenticationCredential and XksProxyUriPath can change while it is "+state+"; disconnect it to change the endpoint, connectivity or VPC endpoint service.")
	}
	if err := validateXKSFields(next, secret); err != nil {
		return false, err
	}
	changed := restricted || next.XksProxyUriPath != cfg.XksProxyUriPath || next.XksAccessKeyID != cfg.XksAccessKeyID || secret != sec.XksSecretAccessKey
	if !changed {
		return false, nil
	}
	others, err := d.regionStores(ctx, rec.AccountID, all)
	if err != nil {
		return false, err
	}
	if err := d.checkUnique(rec.AccountID, rec.ID, next, others); err != nil {
		return false, err
	}
	endpoint := next.XksProxyUriEndpoint
	if next.XksProxyConnectivity == XksVpcEndpointService {
		if endpoint, err = d.dialEndpoint(ctx, rec.AccountID, next); err != nil {
			return false, err
		}
	}
	// A public proxy is contacted on every change; a VPC one only while the
	// store is connected (it is first reached at ConnectCustomKeyStore).
	if next.XksProxyConnectivity == XksPublicEndpoint || state == Connected {
		if err := d.probe(ctx, caller, "UpdateCustomKeyStore", next, secret, endpoint); err != nil {
			return false, err
		}
	}
	*cfg = next
	sec.XksSecretAccessKey = secret
	return state == Connected, nil
}

// reconfigure gives a connected store a client with its new settings.
func (d *xksDrv) reconfigure(ctx context.Context, rec store.CustomKeyStore, cfg cksConfig, sec cksSecret) {
	endpoint, err := d.dialEndpoint(ctx, rec.AccountID, cfg)
	if err == nil {
		var cl *client.Client
		if cl, err = d.newClient(cfg, sec.XksSecretAccessKey, endpoint); err == nil {
			if old := d.store.Attach(rec.ID, cl); old != nil {
				old.CloseIdleConnections()
			}
			return
		}
	}
	d.s.log.Error("xks: applying an update to a connected store failed", "store", rec.ID, "err", err)
}

func (d *xksDrv) checkConnect(context.Context, store.CustomKeyStore, cksConfig) error { return nil }

// connect checks the VPC endpoint service (for VPC connectivity) and the
// proxy's health, then keeps the client. It returns "" or a
// ConnectionErrorCode.
func (d *xksDrv) connect(ctx context.Context, rec store.CustomKeyStore) string {
	cfg := d.s.cks.config(rec)
	sec, err := d.s.cks.openSecret(rec)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	endpoint, err := d.dialEndpoint(ctx, rec.AccountID, cfg)
	if err != nil {
		d.s.log.Info("xks connect: VPC endpoint service", "store", rec.ID, "err", err)
		return vpceConnectionCode(err)
	}
	cl, err := d.newClient(cfg, sec.XksSecretAccessKey, endpoint)
	if err != nil {
		return client.ConnectionErrorCode(err)
	}
	if _, err := cl.Health(ctx, client.RequestMetadata{KMSOperation: "ConnectCustomKeyStore", KMSRequestID: newRequestID()}); err != nil {
		cl.CloseIdleConnections()
		code := client.ConnectionErrorCode(err)
		d.s.log.Info("xks connect: proxy health check failed", "store", rec.ID, "code", code, "err", err)
		return code
	}
	if old := d.store.Attach(rec.ID, cl); old != nil {
		old.CloseIdleConnections()
	}
	d.startMonitor()
	return ""
}

func (d *xksDrv) release(rec store.CustomKeyStore) {
	if cl := d.store.Detach(rec.ID); cl != nil {
		cl.CloseIdleConnections()
	}
	d.mu.Lock()
	delete(d.health, rec.ID)
	d.mu.Unlock()
}

// prepareKey checks the external key with GetKeyMetadata and gives the new
// KMS key its own material (the inner layer of the double encryption).
func (d *xksDrv) prepareKey(ctx context.Context, caller Caller, rec store.CustomKeyStore, cfg cksConfig, k *store.Key, xksKeyID string) error {
	if xksKeyID == "" {
		return errorf(Validation, "XksKeyId is required when Origin is EXTERNAL_KEY_STORE.")
	}
	inUse := func() error {
		return errorf(XksKeyAlreadyInUse, "The external key %s is already associated with a KMS key in custom key store %s.", xksKeyID, rec.ID)
	}
	if _, err := d.s.st.KeyByXksKeyID(ctx, rec.AccountID, rec.ID, xksKeyID); err == nil {
		return inUse()
	} else if !errors.Is(err, store.ErrNotFound) {
		return internal("KeyByXksKeyID", err)
	}
	cl, err := d.store.Client(rec.ID)
	if err != nil {
		return errorf(CustomKeyStoreInvalidState, xksMsgNotConnected)
	}
	md := client.RequestMetadata{AWSPrincipalARN: caller.ARN, KMSKeyARN: d.s.keyARN(k.AccountID, k.ID),
		KMSOperation: "CreateKey", KMSRequestID: caller.RequestID}
	if md.KMSRequestID == "" {
		md.KMSRequestID = newRequestID()
	}
	meta, err := xksstore.Retry(ctx, func() (client.KeyMetadata, error) { return cl.KeyMetadata(ctx, xksKeyID, md) })
	if err == nil {
		err = client.CheckKeyMetadata(meta)
	}
	if err != nil {
		d.s.log.Info("xks CreateKey: external key refused", "store", rec.ID, "xksKeyId", xksKeyID, "err", err)
		return xksCreateKeyError(xksKeyID, err)
	}
	// A concurrent CreateKey on the same external key loses at the
	// store's UNIQUE constraint (keys.go turns it into
	// XksKeyAlreadyInUseException).
	sealed, backing, err := d.s.soft.NewMaterial(k.ID)
	if err != nil {
		return internal("CreateKey", err)
	}
	k.SealedMaterial, k.BackingKeyID, k.XksKeyID = sealed, backing, xksKeyID
	return nil
}

func (d *xksDrv) failureMessage(store.Key) string { return xksMsgNotConnected }

// SetXKSHealthCheckInterval sets how often connected external key stores'
// proxies are health-checked (default 3 minutes, as "every few minutes").
func (s *Service) SetXKSHealthCheckInterval(p time.Duration) {
	if d, ok := s.cks.xks.(*xksDrv); ok && p > 0 {
		d.period.Store(int64(p))
	}
}

// XKSHealth reports the last periodic health check of a connected external
// key store: "" when healthy, else the ConnectionErrorCode it would have
// had; ok is false before the first check.
func (s *Service) XKSHealth(storeID string) (code string, at time.Time, ok bool) {
	d, isXKS := s.cks.xks.(*xksDrv)
	if !isXKS {
		return "", time.Time{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.health[storeID]
	return h.code, h.at, ok
}

// startMonitor starts the periodic health checks (once per Service). As in
// AWS, a failed check does not change the connection state: the store
// stays CONNECTED, its keys' operations fail with KMSInvalidStateException
// while the proxy is down, and the failure is logged (with recovery).
func (d *xksDrv) startMonitor() {
	d.monitorOnce.Do(func() {
		d.s.cks.wg.Add(1)
		go func() {
			defer d.s.cks.wg.Done()
			for {
				t := time.NewTimer(time.Duration(d.period.Load()))
				select {
				case <-d.s.bg.Done():
					t.Stop()
					return
				case <-t.C:
				}
				d.checkAll(d.s.bg)
			}
		}()
	})
}

func (d *xksDrv) checkAll(ctx context.Context) {
	for _, id := range d.store.Stores() {
		cl, err := d.store.Client(id)
		if err != nil {
			continue
		}
		md := client.RequestMetadata{KMSOperation: "KmsHealthCheck", KMSRequestID: newRequestID()}
		_, err = xksstore.Retry(ctx, func() (client.HealthStatus, error) { return cl.Health(ctx, md) })
		code := client.ConnectionErrorCode(err)
		d.mu.Lock()
		prev, seen := d.health[id]
		if _, still := d.store.Client(id); still == nil {
			d.health[id] = xksHealth{code: code, at: time.Now()}
		}
		d.mu.Unlock()
		switch {
		case code != "" && (!seen || prev.code != code):
			d.s.log.Warn("xks periodic health check failed; the store stays CONNECTED but its keys fail until the proxy recovers", "store", id, "code", code, "err", err)
		case code == "" && seen && prev.code != "":
			d.s.log.Info("xks periodic health check: proxy recovered", "store", id)
		}
	}
}
