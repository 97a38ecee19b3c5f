package kms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/keystore"
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

// cksConfig and cksSecret are the keystore package's, which drivers read.
type (
	cksConfig = keystore.Config
	cksSecret = keystore.Secret
)

// XKS connectivity values as AWS spells them.
const (
	XksPublicEndpoint     = "PUBLIC_ENDPOINT"
	XksVpcEndpointService = "VPC_ENDPOINT_SERVICE"
	defaultHealthPeriod   = 3 * time.Minute
)

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
	gen     int  // bumps on every connect/disconnect so a stale worker can tell
	worker  bool // a connect worker of this process is running
	// Replicas: acting > 0 while this process changes the state (between
	// its local change and the stored one); seen is the newest record
	// version it wrote. A record older than that, read by a follow that
	// raced with the change, is stale and ignored.
	acting int
	seen   int64
}

// customKeyStores holds the custom key store side of the domain: records
// in the store, the connection state machine, and the drivers (one per
// store type) that reach the clusters and proxies.
type customKeyStores struct {
	s       *Service
	drivers map[string]keystore.Driver // by CustomKeyStoreType

	mu    sync.RWMutex
	conns map[string]*conn // account/id -> state
	wg    sync.WaitGroup

	// Periodic health checks of connected stores (as AWS makes of XKS
	// proxies): a failed check is logged and kept here; the store stays
	// CONNECTED.
	period      atomic.Int64 // ns
	monitorOnce sync.Once
	hmu         sync.Mutex
	health      map[string]storeHealth // store id -> last check

	// Replicas (SetReplicated): connect workers and health checks run on
	// the leader only (RunLeader); the others follow the stored state with
	// sessions of their own.
	replicated atomic.Bool
	leading    atomic.Bool
}

type storeHealth struct {
	code string // "" = healthy, else a ConnectionErrorCode
	at   time.Time
}

func newCustomKeyStores(s *Service, drivers []keystore.Driver) *customKeyStores {
	c := &customKeyStores{s: s, drivers: map[string]keystore.Driver{}, conns: make(map[string]*conn), health: map[string]storeHealth{}}
	for _, d := range drivers {
		c.drivers[d.Type()] = d
	}
	c.period.Store(int64(defaultHealthPeriod))
	c.leading.Store(true)
	return c
}

// driver picks the driver of a store type.
func (c *customKeyStores) driver(typ string) (keystore.Driver, error) {
	if d := c.drivers[typ]; d != nil {
		return d, nil
	}
	switch typ {
	case TypeCloudHSM:
		return nil, errorf(UnsupportedOperation, "CloudHSM key stores are not enabled on this keyhold.")
	case TypeXKS:
		return nil, errorf(UnsupportedOperation, "External key stores are not enabled on this keyhold.")
	}
	return nil, errorf(Validation, "Unknown CustomKeyStoreType %s.", typ)
}

// driverErr turns a driver's failure into the domain's error: a
// keystore.Error keeps its AWS exception and message; anything else is
// internal.
func driverErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ke *keystore.Error
	if errors.As(err, &ke) {
		return &Error{Code: Code(ke.Code), Message: ke.Message, Cause: ke.Cause}
	}
	if _, ok := AsError(err); ok {
		return err
	}
	return internal(op, err)
}

// call is what a driver is told about the request it serves.
func call(ctx context.Context, caller Request, def string) keystore.Call {
	op := caller.Operation
	if op == "" {
		op = def
	}
	return keystore.Call{PrincipalARN: caller.ARN, Operation: op, RequestID: caller.RequestID}
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

// regionCustomKeyStores lists the caller's stores in its Region (names
// and the quota are per account and Region).
func (s *Service) regionCustomKeyStores(ctx context.Context, caller Request) ([]store.CustomKeyStore, error) {
	all, err := s.st.ListCustomKeyStores(ctx, caller.AccountID)
	if err != nil {
		return nil, err
	}
	region := s.regionOf(caller)
	return slices.DeleteFunc(all, func(r store.CustomKeyStore) bool { return r.Region != region }), nil
}

func storeNotFound(id string) error {
	return errorf(CustomKeyStoreNotFound, "Custom key store '%s' does not exist.", id)
}

// load reads a store of the caller's account and Region: a store of
// another Region does not exist there, as in AWS.
func (c *customKeyStores) load(ctx context.Context, caller Request, id string) (store.CustomKeyStore, cksConfig, error) {
	rec, err := c.s.st.GetCustomKeyStore(ctx, caller.AccountID, id)
	if err == nil && rec.Region != c.s.regionOf(caller) {
		err = store.ErrNotFound
	}
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
func (s *Service) CreateCustomKeyStore(ctx context.Context, caller Request, in CreateCustomKeyStoreInput) (string, error) {
	c := s.cks
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return "", err
	}
	if in.Type == "" {
		in.Type = TypeCloudHSM
	}
	drv, err := c.driver(in.Type)
	if err != nil {
		return "", err
	}
	all, err := s.regionCustomKeyStores(ctx, caller)
	if err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	given := in.settings()
	if rp, ok := drv.(keystore.Repeater); ok {
		// Creating the same store again returns it (CloudHSM, while it is
		// disconnected).
		for _, r := range all {
			if r.Type != in.Type || r.Name != in.Name {
				continue
			}
			view, err := c.view(r)
			if err != nil {
				return "", err
			}
			if st, _ := c.connState(r); rp.Repeats(view, st, in.Name, given) {
				return r.ID, nil
			}
		}
	}
	others, err := c.regionStores(ctx, caller.AccountID, "")
	if err != nil {
		return "", err
	}
	ch := keystore.Change{AccountID: caller.AccountID, Given: given, Others: others, Call: call(ctx, caller, "CreateCustomKeyStore")}
	v, err := drv.Validate(ctx, ch)
	if err != nil {
		return "", driverErr("CreateCustomKeyStore", err)
	}
	// The domain's own rules come before any contact with a backend.
	for _, r := range all {
		if r.Name == in.Name {
			return "", nameInUse(in.Name)
		}
	}
	if len(all) >= maxCustomKeyStores {
		return "", errorf(LimitExceeded, "This account has the maximum of %d custom key stores in this Region.", maxCustomKeyStores)
	}
	if err := drv.Probe(ctx, ch, v); err != nil {
		return "", driverErr("CreateCustomKeyStore", err)
	}
	cfg, sec := v.Config, v.Secret
	id, err := newStoreID()
	if err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	rec := store.CustomKeyStore{AccountID: caller.AccountID, Region: s.regionOf(caller), ID: id, Name: in.Name, Type: in.Type,
		Created: s.now().UTC().Truncate(time.Millisecond), ConnectionState: Disconnected}
	if rec.Config, err = json.Marshal(cfg); err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	if rec.SealedSecret, err = c.sealSecret(caller.AccountID, id, sec); err != nil {
		return "", internal("CreateCustomKeyStore", err)
	}
	rec.BackupHistory = v.BackupHistory
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
func (s *Service) DescribeCustomKeyStores(ctx context.Context, caller Request, id, name string, limit int, marker string) ([]CustomKeyStore, Page, error) {
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
	all, err := s.regionCustomKeyStores(ctx, caller)
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
func (s *Service) UpdateCustomKeyStore(ctx context.Context, caller Request, in UpdateCustomKeyStoreInput) error {
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

func (s *Service) updateCustomKeyStore(ctx context.Context, caller Request, in UpdateCustomKeyStoreInput) error {
	c := s.cks
	rec, cfg, err := c.load(ctx, caller, in.ID)
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
	all, err := s.regionCustomKeyStores(ctx, caller)
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
	drv, err := c.driver(rec.Type)
	if err != nil {
		return err
	}
	others, err := c.regionStores(ctx, rec.AccountID, rec.ID)
	if err != nil {
		return err
	}
	cur := keystore.Store{AccountID: rec.AccountID, ID: rec.ID, Name: rec.Name, Type: rec.Type, Config: cfg, Secret: sec}
	ch := keystore.Change{AccountID: rec.AccountID, ID: rec.ID, Current: &cur, State: state, Given: in.settings(), Others: others,
		Call: call(ctx, caller, "UpdateCustomKeyStore")}
	v, err := drv.Validate(ctx, ch)
	if err != nil {
		return driverErr("UpdateCustomKeyStore", err)
	}
	if err := drv.Probe(ctx, ch, v); err != nil {
		return driverErr("UpdateCustomKeyStore", err)
	}
	cfg, sec = v.Config, v.Secret
	rec.BackupHistory = v.BackupHistory
	if rec.Config, err = json.Marshal(cfg); err != nil {
		return internal("UpdateCustomKeyStore", err)
	}
	if rec.SealedSecret, err = c.sealSecret(rec.AccountID, rec.ID, sec); err != nil {
		return internal("UpdateCustomKeyStore", err)
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
	if v.Live {
		cur.Name, cur.Config, cur.Secret = rec.Name, cfg, sec
		if err := drv.Reconfigure(ctx, cur); err != nil {
			s.log.Error("applying an update to a connected custom key store failed", "store", rec.ID, "err", err)
		}
	}
	return nil
}

// DeleteCustomKeyStore deletes a DISCONNECTED store that has no keys. It
// never touches the cluster, the proxy or any backing key.
func (s *Service) DeleteCustomKeyStore(ctx context.Context, caller Request, id string) error {
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
func (s *Service) ConnectCustomKeyStore(ctx context.Context, caller Request, id string) error {
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
	drv, err := c.driver(rec.Type)
	if err != nil {
		return err
	}
	sec, err := c.openSecret(rec)
	if err != nil {
		return err
	}
	if err := drv.CheckConnect(ctx, keystore.Store{AccountID: rec.AccountID, ID: rec.ID, Name: rec.Name, Type: rec.Type, Config: cfg, Secret: sec}); err != nil {
		return driverErr("ConnectCustomKeyStore", err)
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

// persistState records the connection state so a restart resumes it (and
// other replicas follow it).
func (c *customKeyStores) persistState(ctx context.Context, account, id, state, code string) {
	var version int64
	err := c.updateRecord(ctx, account, id, func(rec *store.CustomKeyStore) error {
		rec.ConnectionState, rec.ConnectionErrorCode = state, code
		version = rec.Version + 1
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.s.log.Error("saving custom key store state", "store", id, "err", err)
		return
	}
	c.mu.Lock()
	if cn := c.conns[c.key(account, id)]; cn != nil && version > cn.seen {
		cn.seen = version
	}
	c.mu.Unlock()
}

// acting brackets a change of a store's state made by this process: until
// done is called, other replicas' notifications about the store are
// ignored (they may carry the state from before the change).
func (c *customKeyStores) acting(rec store.CustomKeyStore) (done func()) {
	k := c.key(rec.AccountID, rec.ID)
	c.mu.Lock()
	cn := c.conns[k]
	if cn == nil {
		cn = &conn{}
		c.conns[k] = cn
	}
	cn.acting++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		cn.acting--
		c.mu.Unlock()
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
func (s *Service) authorizedStore(ctx context.Context, caller Request, id string) (store.CustomKeyStore, cksConfig, error) {
	if err := s.authorize(ctx, caller, nil, nil); err != nil {
		return store.CustomKeyStore{}, cksConfig{}, err
	}
	return s.cks.load(ctx, caller, id)
}

func clusterInUse(clusterID string) error {
	return errorf(CloudHsmClusterInUse, "CloudHSM cluster %s, or a cluster that shares its backup history, is already associated with another custom key store.", clusterID)
}

func nameInUse(name string) error {
	return errorf(CustomKeyStoreNameInUse, "A custom key store with the name %s already exists in this account and Region.", name)
}

func (c *customKeyStores) startConnect(ctx context.Context, rec store.CustomKeyStore) error {
	done := c.acting(rec)
	gen := c.setConn(rec, Connecting, "", true)
	c.persistState(ctx, rec.AccountID, rec.ID, Connecting, "")
	done()
	if c.leading.Load() {
		c.runWorker(rec, gen)
	}
	// Else the leader's worker connects: it follows the stored CONNECTING.
	return nil
}

// runWorker connects a store for every replica: the driver's Connect (for
// CloudHSM: log in, rotate kmsuser's password), then the outcome stored
// (CONNECTED or FAILED), which the other replicas follow. It runs where
// the request came in on a single process, on the leader on replicas.
func (c *customKeyStores) runWorker(rec store.CustomKeyStore, gen int) {
	k := c.key(rec.AccountID, rec.ID)
	c.mu.Lock()
	cn := c.conns[k]
	if cn == nil || cn.gen != gen || cn.worker {
		c.mu.Unlock()
		return
	}
	cn.worker = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			if cn := c.conns[k]; cn != nil {
				cn.worker = false
			}
			c.mu.Unlock()
		}()
		// The connection outlives the request that asked for it.
		bg, cancel := context.WithTimeout(c.s.bg, 2*time.Minute)
		defer cancel()
		code := c.connect(bg, rec)
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
		cn := c.conns[k]
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
}

// current reports whether gen is still the store's latest connect.
func (c *customKeyStores) current(rec store.CustomKeyStore, gen int) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cn := c.conns[c.key(rec.AccountID, rec.ID)]
	return cn != nil && cn.gen == gen
}

// DisconnectCustomKeyStore logs out and makes the store's keys unavailable.
func (s *Service) DisconnectCustomKeyStore(ctx context.Context, caller Request, id string) error {
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
	done := c.acting(rec)
	defer done()
	c.setConn(rec, Disconnecting, "", true)
	c.release(ctx, rec)
	c.setConn(rec, Disconnected, "", false)
	c.persistState(ctx, rec.AccountID, rec.ID, Disconnected, "")
	return nil
}

// connect asks the store's driver for a live connection; it returns "" or
// a ConnectionErrorCode.
func (c *customKeyStores) connect(ctx context.Context, rec store.CustomKeyStore) string {
	drv, err := c.driver(rec.Type)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	view, err := c.view(rec)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	save := func(ctx context.Context, sec keystore.Secret) error { return c.saveSecret(ctx, rec, sec) }
	if err := drv.Connect(ctx, view, save); err != nil {
		code := keystore.ConnectionCode(err)
		c.s.log.Info("custom key store connect failed", "store", rec.ID, "type", rec.Type, "code", code, "err", err)
		return code
	}
	c.startMonitor()
	return ""
}

func (c *customKeyStores) saveSecret(ctx context.Context, rec store.CustomKeyStore, sec cksSecret) error {
	sealed, err := c.sealSecret(rec.AccountID, rec.ID, sec)
	if err != nil {
		return err
	}
	return c.updateRecord(ctx, rec.AccountID, rec.ID, func(cur *store.CustomKeyStore) error {
		cur.SealedSecret = sealed
		return nil
	})
}

// release drops a store's live connection (logout for CloudHSM).
func (c *customKeyStores) release(ctx context.Context, rec store.CustomKeyStore) {
	if drv, err := c.driver(rec.Type); err == nil {
		if err := drv.Disconnect(ctx, keystore.Store{AccountID: rec.AccountID, ID: rec.ID, Name: rec.Name, Type: rec.Type, Config: c.config(rec)}); err != nil {
			c.s.log.Warn("custom key store disconnect", "store", rec.ID, "err", err)
		}
	}
	c.hmu.Lock()
	delete(c.health, rec.ID)
	c.hmu.Unlock()
}

// Start gives whatever was stored before keyhold knew Regions to the
// default Region and resumes the connections that were up when keyhold
// stopped.
func (s *Service) Start(ctx context.Context) error {
	// Everything stored before keyhold knew Regions belongs to the
	// default Region.
	if err := s.st.AssignRegion(ctx, s.region); err != nil {
		return err
	}
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
			if s.cks.replicated.Load() {
				// Other replicas may be serving the store: open this
				// replica's own session to a connected one; a connect in
				// progress is the leader's to finish.
				s.cks.follow(rec.AccountID, rec.ID)
				continue
			}
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
// backing material through the store's driver.
func (c *customKeyStores) prepareKey(ctx context.Context, caller Request, k *store.Key, in CreateKeyInput) error {
	rec, cfg, err := c.load(ctx, caller, in.CustomKeyStoreID)
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
	drv, err := c.driver(rec.Type)
	if err != nil {
		return err
	}
	if in.Origin == OriginXKS {
		// One KMS key per external key per store: checked here so a taken
		// id fails before the proxy is asked; a race is settled by the
		// store's UNIQUE constraint (CreateKey).
		if _, err := c.s.st.KeyByXksKeyID(ctx, rec.AccountID, rec.ID, in.XksKeyID); err == nil {
			return errorf(XksKeyAlreadyInUse, "The external key %s is already associated with a KMS key in custom key store %s.", in.XksKeyID, rec.ID)
		} else if !errors.Is(err, store.ErrNotFound) {
			return internal("KeyByXksKeyID", err)
		}
	}
	view, err := c.view(rec)
	if err != nil {
		return err
	}
	k.CustomKeyStoreID = rec.ID
	ref := c.s.keyRef(*k)
	ref.XksKeyID = in.XksKeyID
	m, err := drv.CreateKey(ctx, view, ref, call(ctx, caller, "CreateKey"))
	if err != nil {
		return driverErr("CreateKey", err)
	}
	k.BackingKeyID, k.SealedMaterial = m.BackingKeyID, m.SealedMaterial
	switch rec.Type {
	case TypeCloudHSM:
		k.CloudHsmClusterID = cfg.CloudHsmClusterID
	case TypeXKS:
		k.XksKeyID = in.XksKeyID
	}
	return nil
}

// abandonKey undoes prepareKey when the key record could not be written.
func (c *customKeyStores) abandonKey(ctx context.Context, k store.Key) {
	c.destroyKeyMaterial(ctx, k)
}

// destroyKeyMaterial makes a best-effort destroy of a deleted key's
// material through its store's driver (an external key is never touched).
func (c *customKeyStores) destroyKeyMaterial(ctx context.Context, k store.Key) {
	if k.CustomKeyStoreID == "" {
		return
	}
	drv, err := c.driver(storeType(k))
	if err == nil {
		err = drv.DestroyKey(ctx, c.s.keyRef(k))
	}
	if err != nil {
		c.s.log.Warn("destroying a deleted key's material in its custom key store failed (best effort)", "key", keyARN(k), "err", err)
	}
}

// storeType is the type of the custom key store a key's origin implies.
func storeType(k store.Key) string {
	if k.Origin == OriginXKS {
		return TypeXKS
	}
	return TypeCloudHSM
}

func (c *customKeyStores) failureMessage(k store.Key) string {
	if drv, err := c.driver(storeType(k)); err == nil {
		return drv.Unavailable(c.s.keyRef(k))
	}
	return fmt.Sprintf("%s is unavailable.", keyARN(k))
}

func (c *customKeyStores) generateRandom(ctx context.Context, caller Request, id string, n int) ([]byte, error) {
	rec, _, err := c.load(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	drv, _ := c.driver(rec.Type)
	r, ok := drv.(keystore.Randomness)
	if !ok {
		return nil, errorf(UnsupportedOperation, "GenerateRandom is not supported for custom key stores of type %s.", rec.Type)
	}
	if state, _ := c.connState(rec); state != Connected {
		return nil, invalidState(id, state, "GenerateRandom needs a CONNECTED custom key store.")
	}
	b, err := r.GenerateRandom(ctx, id, n)
	if err != nil {
		return nil, driverErr("GenerateRandom", err)
	}
	return b, nil
}

// view is a store as its driver sees it (secret opened).
func (c *customKeyStores) view(rec store.CustomKeyStore) (keystore.Store, error) {
	var cfg cksConfig
	if err := json.Unmarshal(rec.Config, &cfg); err != nil {
		return keystore.Store{}, internal("custom key store config", err)
	}
	sec, err := c.openSecret(rec)
	if err != nil {
		return keystore.Store{}, err
	}
	return keystore.Store{AccountID: rec.AccountID, ID: rec.ID, Name: rec.Name, Type: rec.Type, Config: cfg, Secret: sec}, nil
}

// regionStores lists the custom key stores of every account but self
// (their configurations, not their secrets): uniqueness rules hold across
// the Region.
func (c *customKeyStores) regionStores(ctx context.Context, account, self string) ([]keystore.Store, error) {
	accts, err := c.s.st.ListAccounts(ctx)
	if err != nil {
		return nil, internal("ListAccounts", err)
	}
	seen := false
	var out []keystore.Store
	list := func(a string) error {
		rs, err := c.s.st.ListCustomKeyStores(ctx, a)
		if err != nil {
			return internal("ListCustomKeyStores", err)
		}
		for _, r := range rs {
			if r.AccountID == account && r.ID == self {
				continue
			}
			out = append(out, keystore.Store{AccountID: r.AccountID, ID: r.ID, Name: r.Name, Type: r.Type, Config: c.config(r)})
		}
		return nil
	}
	for _, a := range accts {
		seen = seen || a.ID == account
		if err := list(a.ID); err != nil {
			return nil, err
		}
	}
	if !seen {
		if err := list(account); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *customKeyStores) config(r store.CustomKeyStore) cksConfig {
	var cfg cksConfig
	c.s.unmarshalConfig(r.Config, &cfg)
	return cfg
}

// settings are the type-specific fields of a create.
func (in CreateCustomKeyStoreInput) settings() keystore.Settings {
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	return keystore.Settings{CloudHsmClusterID: opt(in.CloudHsmClusterID), TrustAnchorCertificate: opt(in.TrustAnchorCertificate),
		KeyStorePassword: opt(in.KeyStorePassword), XksProxyUriEndpoint: opt(in.XksProxyUriEndpoint), XksProxyUriPath: opt(in.XksProxyUriPath),
		XksProxyConnectivity: opt(in.XksProxyConnectivity), XksProxyVpcEndpointServiceName: opt(in.XksProxyVpcEndpointServiceName),
		XksProxyVpcEndpointServiceOwner: opt(in.XksProxyVpcEndpointServiceOwner), XksAccessKeyID: opt(in.XksAccessKeyID),
		XksSecretAccessKey: opt(in.XksSecretAccessKey)}
}

// settings are the type-specific fields of an update.
func (in UpdateCustomKeyStoreInput) settings() keystore.Settings {
	return keystore.Settings{CloudHsmClusterID: in.CloudHsmClusterID, KeyStorePassword: in.KeyStorePassword,
		XksProxyUriEndpoint: in.XksProxyUriEndpoint, XksProxyUriPath: in.XksProxyUriPath, XksProxyConnectivity: in.XksProxyConnectivity,
		XksProxyVpcEndpointServiceName: in.XksProxyVpcEndpointServiceName, XksProxyVpcEndpointServiceOwner: in.XksProxyVpcEndpointServiceOwner,
		XksAccessKeyID: in.XksAccessKeyID, XksSecretAccessKey: in.XksSecretAccessKey}
}

// SetXKSHealthCheckInterval sets how often connected custom key stores'
// backends (XKS proxies) are health-checked (default 3 minutes, as "every
// few minutes").
func (s *Service) SetXKSHealthCheckInterval(p time.Duration) {
	if p > 0 {
		s.cks.period.Store(int64(p))
	}
}

// XKSHealth reports the last periodic health check of a connected custom
// key store: "" when healthy, else the ConnectionErrorCode it would have
// had; ok is false before the first check.
func (s *Service) XKSHealth(storeID string) (code string, at time.Time, ok bool) {
	c := s.cks
	c.hmu.Lock()
	defer c.hmu.Unlock()
	h, ok := c.health[storeID]
	return h.code, h.at, ok
}

// startMonitor starts the periodic health checks (once per Service). As in
// AWS, a failed check does not change the connection state: the store
// stays CONNECTED, its keys' operations fail with KMSInvalidStateException
// while the backend is down, and the failure is logged (with recovery).
func (c *customKeyStores) startMonitor() {
	c.monitorOnce.Do(func() {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				t := time.NewTimer(time.Duration(c.period.Load()))
				select {
				case <-c.s.bg.Done():
					t.Stop()
					return
				case <-t.C:
				}
				c.checkAll(c.s.bg)
			}
		}()
	})
}

// checkAll health-checks every store this process holds CONNECTED (on
// replicas, only the leader checks: one check per store, not one per
// replica).
func (c *customKeyStores) checkAll(ctx context.Context) {
	if !c.leading.Load() {
		return
	}
	type target struct{ account, id string }
	var ts []target
	c.mu.RLock()
	for k, cn := range c.conns {
		if cn.state == Connected {
			if i := strings.IndexByte(k, '/'); i > 0 {
				ts = append(ts, target{k[:i], k[i+1:]})
			}
		}
	}
	c.mu.RUnlock()
	for _, t := range ts {
		rec, err := c.s.st.GetCustomKeyStore(ctx, t.account, t.id)
		if err != nil {
			continue
		}
		drv, err := c.driver(rec.Type)
		if err != nil {
			continue
		}
		err = drv.Health(ctx, rec.ID)
		code := keystore.ConnectionCode(err)
		c.hmu.Lock()
		prev, seen := c.health[rec.ID]
		if c.connected(t.account, t.id) {
			c.health[rec.ID] = storeHealth{code: code, at: time.Now()}
		}
		c.hmu.Unlock()
		switch {
		case code != "" && (!seen || prev.code != code):
			c.s.log.Warn("custom key store periodic health check failed; the store stays CONNECTED but its keys fail until its backend recovers", "store", rec.ID, "code", code, "err", err)
		case code == "" && seen && prev.code != "":
			c.s.log.Info("custom key store periodic health check: backend recovered", "store", rec.ID)
		}
	}
}
