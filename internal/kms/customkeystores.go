package kms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/keystore/hsmstore"
	"github.com/keyhold/keyhold/internal/store"
)

// Custom key store types, connection states and limits as AWS spells them.
const (
	TypeCloudHSM = "AWS_CLOUDHSM"
	TypeXKS      = "EXTERNAL_KEY_STORE"

	Connected     = "CONNECTED"
	Connecting    = "CONNECTING"
	Disconnected  = "DISCONNECTED"
	Disconnecting = "DISCONNECTING"
	Failed        = "FAILED"

	// maxCustomKeyStores is AWS's per-account, per-Region quota.
	maxCustomKeyStores = 10
)

// cksConfig is the non-secret configuration of a custom key store.
type cksConfig struct {
	CloudHsmClusterID      string `json:",omitempty"`
	TrustAnchorCertificate string `json:",omitempty"`
	// ClusterCertificate is the cluster's certificate when the store was
	// created or last re-pointed: "shares a backup history" means the same
	// certificate, and a deleted cluster can still be compared.
	ClusterCertificate string `json:",omitempty"`

	XksProxyUriEndpoint             string `json:",omitempty"`
	XksProxyUriPath                 string `json:",omitempty"`
	XksProxyConnectivity            string `json:",omitempty"`
	XksProxyVpcEndpointServiceName  string `json:",omitempty"`
	XksProxyVpcEndpointServiceOwner string `json:",omitempty"`
	XksAccessKeyID                  string `json:",omitempty"`
}

// cksSecret is sealed by the root key before it is stored.
type cksSecret struct {
	// Password is kmsuser's password as KMS knows it: the one given at
	// create/update, replaced by the rotated one after each connect.
	Password string `json:",omitempty"`
	// PendingPassword is a rotation in flight: if keyhold died between
	// C_SetPIN and saving, the next connect tries it too.
	PendingPassword    string `json:",omitempty"`
	XksSecretAccessKey string `json:",omitempty"`
}

func (cksSecret) String() string { return "cksSecret{redacted}" }

// CustomKeyStore is what DescribeCustomKeyStores reports.
type CustomKeyStore struct {
	ID, Name, Type      string
	Created             time.Time
	ConnectionState     string
	ConnectionErrorCode string
	CloudHsmClusterID   string
	TrustAnchor         string
	Xks                 *XksProxyConfiguration
}

// XksProxyConfiguration is an external key store's proxy settings (never
// the secret).
type XksProxyConfiguration struct {
	AccessKeyID, Connectivity, UriEndpoint, UriPath, VpcEndpointServiceName, VpcEndpointServiceOwner string
}

// CreateCustomKeyStoreInput holds CreateCustomKeyStore's parameters.
type CreateCustomKeyStoreInput struct {
	Name                            string
	Type                            string
	CloudHsmClusterID               string
	TrustAnchorCertificate          string
	KeyStorePassword                string
	XksProxyUriEndpoint             string
	XksProxyUriPath                 string
	XksProxyConnectivity            string
	XksProxyVpcEndpointServiceName  string
	XksProxyVpcEndpointServiceOwner string
	XksAccessKeyID                  string
	XksSecretAccessKey              string
}

// UpdateCustomKeyStoreInput holds UpdateCustomKeyStore's parameters; nil
// means "not given".
type UpdateCustomKeyStoreInput struct {
	ID                              string
	NewName                         *string
	KeyStorePassword                *string
	CloudHsmClusterID               *string
	XksProxyUriEndpoint             *string
	XksProxyUriPath                 *string
	XksProxyConnectivity            *string
	XksProxyVpcEndpointServiceName  *string
	XksProxyVpcEndpointServiceOwner *string
	XksAccessKeyID                  *string
	XksSecretAccessKey              *string
}

// conn is a store's live connection state.
type conn struct {
	state   string
	errCode string
	gen     int // bumps on every connect/disconnect so a stale worker can tell
}

// customKeyStores holds the custom key store side of the domain: records
// in the store, live connection states, and the backends that reach the
// clusters and proxies.
type customKeyStores struct {
	s        *Service
	clusters Clusters
	hsm      *hsmstore.Backend
	xks      xksDriver

	mu    sync.RWMutex
	conns map[string]*conn // account/id -> state
	wg    sync.WaitGroup
}

func newCustomKeyStores(s *Service) *customKeyStores {
	return &customKeyStores{s: s, hsm: hsmstore.New(), xks: noXKS{}, conns: make(map[string]*conn)}
}

// SetClusters gives the domain the HSM cluster control plane. Without it,
// CloudHSM key stores report CloudHsmClusterNotFoundException.
func (s *Service) SetClusters(c Clusters) {
	s.cks.clusters = c
	s.RegisterBackend(s.cks.hsm)
}

func (c *customKeyStores) key(account, id string) string { return account + "/" + id }

// connected reports whether a store is CONNECTED (its keys usable).
func (c *customKeyStores) connected(account, id string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cn := c.conns[c.key(account, id)]
	return cn != nil && cn.state == Connected
}

func (c *customKeyStores) connState(rec store.CustomKeyStore) (string, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cn := c.conns[c.key(rec.AccountID, rec.ID)]; cn != nil {
		return cn.state, cn.errCode
	}
	if rec.ConnectionState == "" {
		return Disconnected, ""
	}
	return rec.ConnectionState, rec.ConnectionErrorCode
}

func newStoreID() (string, error) {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "cks-" + hex.EncodeToString(b)[:17], nil
}

func storeNotFound(id string) error {
	return errorf(CustomKeyStoreNotFound, "Custom key store '%s' does not exist.", id)
}

func (c *customKeyStores) load(ctx context.Context, account, id string) (store.CustomKeyStore, cksConfig, error) {
	rec, err := c.s.st.GetCustomKeyStore(ctx, account, id)
	if errors.Is(err, store.ErrNotFound) {
		return rec, cksConfig{}, storeNotFound(id)
	}
	if err != nil {
		return rec, cksConfig{}, internal("custom key store", err)
	}
	var cfg cksConfig
	if err := json.Unmarshal(rec.Config, &cfg); err != nil {
		return rec, cfg, internal("custom key store config", err)
	}
	return rec, cfg, nil
}

func secretAAD(account, id string) []byte { return []byte("keyhold-cks-secret:" + account + ":" + id) }

func (c *customKeyStores) openSecret(rec store.CustomKeyStore) (cksSecret, error) {
	var sec cksSecret
	if len(rec.SealedSecret) == 0 {
		return sec, nil
	}
	b, err := c.s.root.Open(rec.SealedSecret, secretAAD(rec.AccountID, rec.ID))
	if err != nil {
		return sec, internal("unseal custom key store secret", err)
	}
	defer clear(b)
	if err := json.Unmarshal(b, &sec); err != nil {
		return sec, internal("custom key store secret", err)
	}
	return sec, nil
}

func (c *customKeyStores) sealSecret(account, id string, sec cksSecret) ([]byte, error) {
	b, err := json.Marshal(sec)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return c.s.root.Seal(b, secretAAD(account, id))
}

// CreateCustomKeyStore creates a DISCONNECTED store.
func (s *Service) CreateCustomKeyStore(ctx context.Context, caller Caller, in CreateCustomKeyStoreInput) (string, error) {
	c := s.cks
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return "", err
	}
	if in.Type == "" {
		in.Type = TypeCloudHSM
	}
	all, err := s.st.ListCustomKeyStores(ctx, caller.AccountID)
	if err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	var cfg cksConfig
	var sec cksSecret
	switch in.Type {
	case TypeCloudHSM:
		id, ok, err := c.validateCloudHSMCreate(ctx, in, all)
		if err != nil || ok {
			return id, err
		}
		cfg, sec, err = c.cloudHSMConfig(ctx, in)
		if err != nil {
			return "", err
		}
	case TypeXKS:
		cfg, sec, err = c.xks.validateCreate(ctx, caller, in, all)
		if err != nil {
			return "", err
		}
	default:
		return "", errorf(Validation, "Unknown CustomKeyStoreType %s.", in.Type)
	}
	for _, r := range all {
		if r.Name == in.Name {
			return "", nameInUse(in.Name)
		}
	}
	if len(all) >= maxCustomKeyStores {
		return "", errorf(LimitExceeded, "This account has the maximum of %d custom key stores in this Region.", maxCustomKeyStores)
	}
	id, err := newStoreID()
	if err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	rec := store.CustomKeyStore{AccountID: caller.AccountID, ID: id, Name: in.Name, Type: in.Type,
		Created: s.now().UTC().Truncate(time.Millisecond), ConnectionState: Disconnected}
	if rec.Config, err = json.Marshal(cfg); err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	if rec.SealedSecret, err = c.sealSecret(caller.AccountID, id, sec); err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	if in.Type == TypeCloudHSM {
		rec.BackupHistory = backupHistory(cfg.ClusterCertificate)
	}
	if err := s.st.CreateCustomKeyStore(ctx, rec); err != nil {
		if errors.Is(err, store.ErrBackupHistoryInUse) {
			return "", clusterInUse(in.CloudHsmClusterID)
		}
		if errors.Is(err, store.ErrExists) {
			return "", nameInUse(in.Name)
		}
		return "", internal("CreateCustomKeyStore", err)
	}
	return id, nil
}

// DescribeCustomKeyStores lists stores, or the one named by id or name.
func (s *Service) DescribeCustomKeyStores(ctx context.Context, caller Caller, id, name string, limit int, marker string) ([]CustomKeyStore, Page, error) {
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return nil, Page{}, err
	}
	if id != "" && name != "" {
		return nil, Page{}, errorf(Validation, "Specify either CustomKeyStoreId or CustomKeyStoreName, not both.")
	}
	after, err := decodeMarker(marker)
	if err != nil {
		return nil, Page{}, err
	}
	all, err := s.st.ListCustomKeyStores(ctx, caller.AccountID)
	if err != nil {
		return nil, Page{}, internal("DescribeCustomKeyStores", err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	var out []CustomKeyStore
	for _, r := range all {
		if (id != "" && r.ID != id) || (name != "" && r.Name != name) || r.ID <= after {
			continue
		}
		out = append(out, s.cks.describe(r))
	}
	if len(out) == 0 && (id != "" || name != "") {
		if id != "" {
			return nil, Page{}, storeNotFound(id)
		}
		return nil, Page{}, errorf(CustomKeyStoreNotFound, "Custom key store with name '%s' does not exist.", name)
	}
	limit = pageLimit(limit)
	var p Page
	if len(out) > limit {
		out = out[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(out[limit-1].ID)}
	}
	return out, p, nil
}

func (c *customKeyStores) describe(r store.CustomKeyStore) CustomKeyStore {
	cfg := c.config(r)
	st, code := c.connState(r)
	d := CustomKeyStore{ID: r.ID, Name: r.Name, Type: r.Type, Created: r.Created, ConnectionState: st}
	if st == Failed {
		d.ConnectionErrorCode = code
	}
	switch r.Type {
	case TypeCloudHSM:
		d.CloudHsmClusterID, d.TrustAnchor = cfg.CloudHsmClusterID, cfg.TrustAnchorCertificate
	case TypeXKS:
		d.Xks = &XksProxyConfiguration{AccessKeyID: cfg.XksAccessKeyID, Connectivity: cfg.XksProxyConnectivity,
			UriEndpoint: cfg.XksProxyUriEndpoint, UriPath: cfg.XksProxyUriPath,
			VpcEndpointServiceName: cfg.XksProxyVpcEndpointServiceName, VpcEndpointServiceOwner: cfg.XksProxyVpcEndpointServiceOwner}
	}
	return d
}

func invalidState(id, state, what string) error {
	return errorf(CustomKeyStoreInvalidState, "Custom key store %s is %s; %s", id, state, what)
}

// UpdateCustomKeyStore changes a store's properties. The name (and, for an
// external key store, the credential and URI path) may change while
// CONNECTED; everything else needs DISCONNECTED.
func (s *Service) UpdateCustomKeyStore(ctx context.Context, caller Caller, in UpdateCustomKeyStoreInput) error {
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return err
	}
	// A connect finishing in the background may save the store's state
	// between this update's read and write: read again and retry.
	for attempt := 0; ; attempt++ {
		err := s.updateCustomKeyStore(ctx, caller, in)
		if !errors.Is(err, store.ErrConflict) || attempt == 4 {
			if errors.Is(err, store.ErrConflict) {
				return internal("UpdateCustomKeyStore", err)
			}
			return err
		}
	}
}

func (s *Service) updateCustomKeyStore(ctx context.Context, caller Caller, in UpdateCustomKeyStoreInput) error {
	c := s.cks
	rec, cfg, err := c.load(ctx, caller.AccountID, in.ID)
	if err != nil {
		return err
	}
	sec, err := c.openSecret(rec)
	if err != nil {
		return err
	}
	state, _ := c.connState(rec)
	if state != Disconnected && state != Connected {
		return invalidState(in.ID, state, "it must be DISCONNECTED or CONNECTED to be updated.")
	}
	all, err := s.st.ListCustomKeyStores(ctx, caller.AccountID)
	if err != nil {
		return internal("UpdateCustomKeyStore", err)
	}
	if in.NewName != nil && *in.NewName != rec.Name {
		for _, r := range all {
			if r.Name == *in.NewName {
				return nameInUse(*in.NewName)
			}
		}
		rec.Name = *in.NewName
	}
	reconfigureLive := false
	switch rec.Type {
	case TypeCloudHSM:
		if err := c.updateCloudHSM(ctx, in, state, &cfg, &sec, all); err != nil {
			return err
		}
	case TypeXKS:
		if reconfigureLive, err = c.xks.update(ctx, caller, rec, in, state, &cfg, &sec, all); err != nil {
			return err
		}
	}
	if rec.Config, err = json.Marshal(cfg); err != nil {
		return internal("UpdateCustomKeyStore", err)
	}
	if rec.SealedSecret, err = c.sealSecret(rec.AccountID, rec.ID, sec); err != nil {
		return internal("UpdateCustomKeyStore", err)
	}
	if rec.Type == TypeCloudHSM {
		rec.BackupHistory = backupHistory(cfg.ClusterCertificate)
	}
	if _, err := s.st.UpdateCustomKeyStore(ctx, rec); err != nil {
		if errors.Is(err, store.ErrBackupHistoryInUse) {
			return clusterInUse(cfg.CloudHsmClusterID)
		}
		if errors.Is(err, store.ErrExists) {
			return nameInUse(rec.Name)
		}
		if errors.Is(err, store.ErrConflict) {
			return err
		}
		return internal("UpdateCustomKeyStore", err)
	}
	if reconfigureLive {
		c.xks.reconfigure(ctx, rec, cfg, sec)
	}
	return nil
}

// DeleteCustomKeyStore deletes a DISCONNECTED store that has no keys. It
// never touches the cluster, the proxy or any backing key.
func (s *Service) DeleteCustomKeyStore(ctx context.Context, caller Caller, id string) error {
	c := s.cks
	rec, _, err := s.authorizedStore(ctx, caller, id)
	if err != nil {
		return err
	}
	if state, _ := c.connState(rec); state != Disconnected {
		return invalidState(id, state, "disconnect it before deleting it.")
	}
	n, err := s.st.CountKeysInStore(ctx, caller.AccountID, id)
	if err != nil {
		return internal("DeleteCustomKeyStore", err)
	}
	if n > 0 {
		return errorf(CustomKeyStoreHasCMKs, "Custom key store %s still has %d KMS keys; delete them (schedule deletion and wait) first.", id, n)
	}
	if err := s.st.DeleteCustomKeyStore(ctx, caller.AccountID, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return storeNotFound(id)
		}
		return internal("DeleteCustomKeyStore", err)
	}
	c.mu.Lock()
	delete(c.conns, c.key(caller.AccountID, id))
	c.mu.Unlock()
	return nil
}

// ConnectCustomKeyStore starts connecting; Describe shows CONNECTING, then
// CONNECTED or FAILED with a ConnectionErrorCode.
func (s *Service) ConnectCustomKeyStore(ctx context.Context, caller Caller, id string) error {
	c := s.cks
	rec, cfg, err := s.authorizedStore(ctx, caller, id)
	if err != nil {
		return err
	}
	state, _ := c.connState(rec)
	switch state {
	case Connected, Connecting:
		return nil
	case Disconnected:
	default:
		return invalidState(id, state, "a store that is "+state+" must be disconnected before it can be connected.")
	}
	if rec.Type == TypeCloudHSM {
		if err := c.checkConnectCloudHSM(ctx, cfg); err != nil {
			return err
		}
	} else if err := c.xks.checkConnect(ctx, rec, cfg); err != nil {
		return err
	}
	return c.startConnect(ctx, rec)
}

func (c *customKeyStores) setConn(rec store.CustomKeyStore, state, code string, bump bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.key(rec.AccountID, rec.ID)
	cn := c.conns[k]
	if cn == nil {
		cn = &conn{}
		c.conns[k] = cn
	}
	cn.state, cn.errCode = state, code
	if bump {
		cn.gen++
	}
	return cn.gen
}

// persistState records the connection state so a restart resumes it.
func (c *customKeyStores) persistState(ctx context.Context, account, id, state, code string) {
	err := c.updateRecord(ctx, account, id, func(rec *store.CustomKeyStore) error {
		rec.ConnectionState, rec.ConnectionErrorCode = state, code
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.s.log.Error("saving custom key store state", "store", id, "err", err)
	}
}

// updateRecord applies fn to the stored record and writes it, reading
// again when a concurrent writer (a connect finishing, an update) won.
func (c *customKeyStores) updateRecord(ctx context.Context, account, id string, fn func(*store.CustomKeyStore) error) error {
	for attempt := 0; attempt < 5; attempt++ {
		rec, err := c.s.st.GetCustomKeyStore(ctx, account, id)
		if err != nil {
			return err
		}
		if err := fn(&rec); err != nil {
			return err
		}
		if _, err = c.s.st.UpdateCustomKeyStore(ctx, rec); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("custom key store %s: %w", id, store.ErrConflict)
}

// authorizedStore authorizes the current operation (custom key store
// operations are identity-policy only) and loads the caller's store.
func (s *Service) authorizedStore(ctx context.Context, caller Caller, id string) (store.CustomKeyStore, cksConfig, error) {
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return store.CustomKeyStore{}, cksConfig{}, err
	}
	return s.cks.load(ctx, caller.AccountID, id)
}

func clusterInUse(clusterID string) error {
	return errorf(CloudHsmClusterInUse, "CloudHSM cluster %s, or a cluster that shares its backup history, is already associated with another custom key store.", clusterID)
}

func nameInUse(name string) error {
	return errorf(CustomKeyStoreNameInUse, "A custom key store with the name %s already exists in this account and Region.", name)
}

func (c *customKeyStores) startConnect(ctx context.Context, rec store.CustomKeyStore) error {
	gen := c.setConn(rec, Connecting, "", true)
	c.persistState(ctx, rec.AccountID, rec.ID, Connecting, "")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// The connection outlives the request that asked for it.
		bg, cancel := context.WithTimeout(c.s.bg, 2*time.Minute)
		defer cancel()
		var code string
		if rec.Type == TypeCloudHSM {
			code = c.connectCloudHSM(bg, rec)
		} else {
			code = c.xks.connect(bg, rec)
		}
		state := Connected
		if code != "" {
			state = Failed
		}
		// Save first, then publish: a concurrent update must not see a state
		// the database does not have yet.
		if c.current(rec, gen) {
			c.persistState(bg, rec.AccountID, rec.ID, state, code)
		}
		c.mu.Lock()
		cn := c.conns[c.key(rec.AccountID, rec.ID)]
		stale := cn == nil || cn.gen != gen
		if !stale {
			cn.state, cn.errCode = state, code
		}
		c.mu.Unlock()
		if stale {
			// Disconnected while connecting: drop what this worker made and
			// leave the saved state to the disconnect.
			c.release(bg, rec)
			if st, code := c.connState(rec); st == Disconnected {
				c.persistState(bg, rec.AccountID, rec.ID, st, code)
			}
			return
		}
		c.s.log.Info("custom key store connection", "store", rec.ID, "state", state, "error_code", code)
	}()
	return nil
}

// current reports whether gen is still the store's latest connect.
func (c *customKeyStores) current(rec store.CustomKeyStore, gen int) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cn := c.conns[c.key(rec.AccountID, rec.ID)]
	return cn != nil && cn.gen == gen
}

// DisconnectCustomKeyStore logs out and makes the store's keys unavailable.
func (s *Service) DisconnectCustomKeyStore(ctx context.Context, caller Caller, id string) error {
	c := s.cks
	rec, _, err := s.authorizedStore(ctx, caller, id)
	if err != nil {
		return err
	}
	state, _ := c.connState(rec)
	switch state {
	case Connected, Connecting, Failed:
	default:
		return invalidState(id, state, "only a CONNECTED, CONNECTING or FAILED store can be disconnected.")
	}
	c.setConn(rec, Disconnecting, "", true)
	c.release(ctx, rec)
	c.setConn(rec, Disconnected, "", false)
	c.persistState(ctx, rec.AccountID, rec.ID, Disconnected, "")
	return nil
}

// release drops a store's live connection (logout for CloudHSM).
func (c *customKeyStores) release(ctx context.Context, rec store.CustomKeyStore) {
	if rec.Type == TypeCloudHSM {
		if sess := c.hsm.Detach(rec.ID); sess != nil {
			if err := sess.Logout(ctx); err != nil {
				c.s.log.Warn("kmsuser logout", "store", rec.ID, "err", err)
			}
		}
		return
	}
	c.xks.release(rec)
}

// Start resumes the connections that were up when keyhold stopped.
func (s *Service) Start(ctx context.Context) error {
	accts, err := s.st.ListAccounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accts {
		all, err := s.st.ListCustomKeyStores(ctx, a.ID)
		if err != nil {
			return err
		}
		for _, rec := range all {
			switch rec.ConnectionState {
			case Connected, Connecting:
				s.cks.startConnect(ctx, rec)
			case Disconnecting:
				s.cks.persistState(ctx, rec.AccountID, rec.ID, Disconnected, "")
			}
		}
	}
	return nil
}

// prepareKey fills a new key's custom key store fields and creates its
// material in the store.
func (c *customKeyStores) prepareKey(ctx context.Context, caller Caller, k *store.Key, in CreateKeyInput) error {
	rec, cfg, err := c.load(ctx, caller.AccountID, in.CustomKeyStoreID)
	if err != nil {
		return err
	}
	want := map[string]string{OriginCloudHSM: TypeCloudHSM, OriginXKS: TypeXKS}[in.Origin]
	if rec.Type != want {
		return errorf(UnsupportedOperation, "Origin %s cannot be used with custom key store %s of type %s.", in.Origin, rec.ID, rec.Type)
	}
	if in.Origin == OriginXKS && in.XksKeyID == "" {
		return errorf(Validation, "XksKeyId is required when Origin is EXTERNAL_KEY_STORE.")
	}
	if state, _ := c.connState(rec); state != Connected {
		return invalidState(rec.ID, state, "keys can be created only in a CONNECTED custom key store.")
	}
	k.CustomKeyStoreID = rec.ID
	if rec.Type == TypeCloudHSM {
		return c.prepareCloudHSMKey(ctx, k, cfg)
	}
	return c.xks.prepareKey(ctx, caller, rec, cfg, k, in.XksKeyID)
}

// abandonKey undoes prepareKey when the key record could not be written.
func (c *customKeyStores) abandonKey(ctx context.Context, k store.Key) {
	if k.Origin == OriginCloudHSM {
		c.destroyKeyMaterial(ctx, k)
	}
}

// destroyKeyMaterial makes a best-effort destroy of a deleted key's material
// in its cluster; XKS keys have nothing to destroy on the KMS side beyond
// the record (the external key is never touched).
func (c *customKeyStores) destroyKeyMaterial(ctx context.Context, k store.Key) {
	if k.Origin != OriginCloudHSM {
		return
	}
	sess, err := c.hsm.Session(k.CustomKeyStoreID)
	if err == nil {
		err = sess.DestroyKey(ctx, c.s.keyARN(k.AccountID, k.ID))
	}
	if err != nil {
		c.s.log.Warn("destroying a deleted key's material in its cluster failed (best effort)", "key", c.s.keyARN(k.AccountID, k.ID), "err", err)
	}
}

func (c *customKeyStores) failureMessage(k store.Key) string {
	if k.Origin == OriginCloudHSM {
		return fmt.Sprintf("KMS cannot communicate with the CloudHSM cluster of custom key store %s for %s.", k.CustomKeyStoreID, c.s.keyARN(k.AccountID, k.ID))
	}
	return c.xks.failureMessage(k)
}

func (c *customKeyStores) generateRandom(ctx context.Context, caller Caller, id string, n int) ([]byte, error) {
	rec, _, err := c.load(ctx, caller.AccountID, id)
	if err != nil {
		return nil, err
	}
	if rec.Type != TypeCloudHSM {
		return nil, errorf(UnsupportedOperation, "GenerateRandom is not supported for custom key stores of type %s.", rec.Type)
	}
	if state, _ := c.connState(rec); state != Connected {
		return nil, invalidState(id, state, "GenerateRandom needs a CONNECTED custom key store.")
	}
	sess, err := c.hsm.Session(id)
	if err != nil {
		return nil, invalidState(id, Disconnected, "GenerateRandom needs a CONNECTED custom key store.")
	}
	b, err := sess.GenerateRandom(ctx, n)
	if err != nil {
		return nil, &Error{Code: InvalidState, Message: "KMS cannot communicate with the CloudHSM cluster of custom key store " + id + ".", Cause: err}
	}
	return b, nil
}
