// Package hsmstore is the CloudHSM key store driver (type AWS_CLOUDHSM,
// Origin AWS_CLOUDHSM): each KMS key is a non-extractable AES-256 key in
// the store's HSM cluster, labelled with the key ARN, and the cluster's key
// encrypts the data directly (AES-GCM, IV chosen by the HSM layer).
//
// It holds the rules AWS documents for CloudHSM key stores (the cluster
// exists, is active, has two HSMs in different Availability Zones, its
// trust anchor matches, it backs no other store) and one logged-in kmsuser
// session per connected store. At each connect it rotates kmsuser's
// password to one only KMS knows, saving it through the domain (sealed by
// the root key) before and after the change. It never logs or returns a
// password.
package hsmstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/keystore"
)

// Clusters is what CloudHSM key stores need from the HSM cluster control
// plane (internal/hsm.Manager implements it).
type Clusters interface {
	Cluster(ctx context.Context, id string) (hsm.ClusterInfo, error)
	LoginAs(ctx context.Context, clusterID, username, password, clientName string) (*hsm.UserSession, error)
	ReleaseLogin(ctx context.Context, clusterID, clientName string) error
}

// clientName is who kmsuser is logged in as: the custom key store, whose
// replicas each hold a session of the one login (CloudHSM allows one per
// crypto user, and the store is that one).
func clientName(s keystore.Store) string { return "kms:" + s.AccountID + "/" + s.ID }

// kmsUser is the crypto user KMS logs in as.
const kmsUser = "kmsuser"

// AWS exception names this driver answers.
const (
	codeValidation           = "ValidationException"
	codeClusterNotFound      = "CloudHsmClusterNotFoundException"
	codeClusterNotActive     = "CloudHsmClusterNotActiveException"
	codeClusterInvalidConfig = "CloudHsmClusterInvalidConfigurationException"
	codeClusterInUse         = "CloudHsmClusterInUseException"
	codeClusterNotRelated    = "CloudHsmClusterNotRelatedException"
	codeIncorrectTrustAnchor = "IncorrectTrustAnchorException"
	codeStoreInvalidState    = "CustomKeyStoreInvalidStateException"
	codeInvalidState         = "KMSInvalidStateException"
	stateDisconnected        = "DISCONNECTED"
)

// Driver implements keystore.Driver for AWS_CLOUDHSM stores.
type Driver struct {
	log *slog.Logger

	cmu      sync.RWMutex
	clusters Clusters

	mu       sync.RWMutex
	sessions map[string]*hsm.UserSession // custom key store id -> session
}

var (
	_ keystore.Driver     = (*Driver)(nil)
	_ keystore.Randomness = (*Driver)(nil)
	_ keystore.Repeater   = (*Driver)(nil)
	_ keystore.Joiner     = (*Driver)(nil)
)

// New returns a driver with no control plane (SetClusters gives it one) and
// no connected stores.
func New(log *slog.Logger) *Driver {
	if log == nil {
		log = slog.Default()
	}
	return &Driver{log: log, sessions: make(map[string]*hsm.UserSession)}
}

// SetClusters gives the driver the HSM cluster control plane. Without it,
// every cluster is CloudHsmClusterNotFoundException.
func (d *Driver) SetClusters(c Clusters) {
	d.cmu.Lock()
	d.clusters = c
	d.cmu.Unlock()
}

func (d *Driver) control() Clusters {
	d.cmu.RLock()
	defer d.cmu.RUnlock()
	return d.clusters
}

func (d *Driver) Type() string    { return keystore.TypeCloudHSM }
func (d *Driver) Kind() blob.Kind { return blob.KindCloudHSM }

func (d *Driver) attach(storeID string, s *hsm.UserSession) {
	d.mu.Lock()
	d.sessions[storeID] = s
	d.mu.Unlock()
}

func (d *Driver) detach(storeID string) *hsm.UserSession {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[storeID]
	delete(d.sessions, storeID)
	return s
}

func (d *Driver) session(storeID string) (*hsm.UserSession, error) {
	d.mu.RLock()
	s := d.sessions[storeID]
	d.mu.RUnlock()
	if s == nil {
		return nil, keystore.ErrNotConnected
	}
	return s, nil
}

func (d *Driver) cluster(ctx context.Context, id string) (hsm.ClusterInfo, error) {
	c := d.control()
	if c == nil {
		return hsm.ClusterInfo{}, keystore.Errorf(codeClusterNotFound, "CloudHSM cluster '%s' does not exist (this keyhold has no HSM cluster control plane).", id)
	}
	info, err := c.Cluster(ctx, id)
	if errors.Is(err, hsm.ErrClusterNotFound) {
		return info, keystore.Errorf(codeClusterNotFound, "CloudHSM cluster '%s' does not exist.", id)
	}
	if err != nil {
		return info, fmt.Errorf("hsmstore: cluster %s: %w", id, err)
	}
	return info, nil
}

func clusterActive(info hsm.ClusterInfo) bool {
	return info.State == "ACTIVE" || info.State == "DEGRADED"
}

func notActive(info hsm.ClusterInfo) error {
	return keystore.Errorf(codeClusterNotActive, "CloudHSM cluster %s is %s; it must be ACTIVE.", info.ID, info.State)
}

// twoZones is the rule for creating a store, re-pointing it, and creating
// a key: at least two ACTIVE HSMs in different Availability Zones.
func twoZones(info hsm.ClusterInfo) error {
	zones := map[string]bool{}
	for _, h := range info.HSMs {
		if h.State == "ACTIVE" {
			zones[h.AvailabilityZone] = true
		}
	}
	if len(zones) < 2 {
		return keystore.Errorf(codeClusterInvalidConfig, "CloudHSM cluster %s must have at least two active HSMs in different Availability Zones; it has active HSMs in %d.", info.ID, len(zones))
	}
	return nil
}

// pemDER returns the DER of the first certificate in a PEM text, so that
// certificates compare equal whatever their line wrapping.
func pemDER(s string) []byte {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil
	}
	return b.Bytes
}

func sameCert(a, b string) bool {
	da, db := pemDER(a), pemDER(b)
	return da != nil && bytes.Equal(da, db)
}

// BackupHistory names a cluster's backup history for the store's UNIQUE
// constraint: clusters that share one have the same cluster certificate.
func BackupHistory(clusterCertPEM string) string {
	der := pemDER(clusterCertPEM)
	if der == nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func given(p *string) bool { return p != nil }

func val(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Validate applies CreateCustomKeyStore's and UpdateCustomKeyStore's rules
// for CloudHSM key stores.
func (d *Driver) Validate(ctx context.Context, ch keystore.Change) (keystore.Validated, error) {
	g := ch.Given
	if ch.Current == nil {
		return d.validateCreate(ctx, ch)
	}
	if given(g.XksProxyUriEndpoint) || given(g.XksProxyUriPath) || given(g.XksProxyConnectivity) ||
		given(g.XksProxyVpcEndpointServiceName) || given(g.XksProxyVpcEndpointServiceOwner) || given(g.XksAccessKeyID) {
		return keystore.Validated{}, keystore.Errorf(codeValidation, "XKS proxy parameters are not valid for a custom key store of type AWS_CLOUDHSM.")
	}
	cfg, sec := ch.Current.Config, ch.Current.Secret
	if (given(g.KeyStorePassword) || given(g.CloudHsmClusterID)) && ch.State != stateDisconnected {
		return keystore.Validated{}, keystore.Errorf(codeStoreInvalidState, "Custom key store %s is %s; only its name can change while it is %s; disconnect it to change the password or the cluster.", ch.ID, ch.State, ch.State)
	}
	if given(g.CloudHsmClusterID) && *g.CloudHsmClusterID != cfg.CloudHsmClusterID {
		info, err := d.cluster(ctx, *g.CloudHsmClusterID)
		if err != nil {
			return keystore.Validated{}, err
		}
		if !sameCert(info.ClusterCertificatePEM, cfg.ClusterCertificate) {
			return keystore.Validated{}, keystore.Errorf(codeClusterNotRelated, "CloudHSM cluster %s does not share a backup history with cluster %s.", *g.CloudHsmClusterID, cfg.CloudHsmClusterID)
		}
		for _, r := range ch.Others {
			if r.Type == keystore.TypeCloudHSM && r.Config.CloudHsmClusterID == *g.CloudHsmClusterID {
				return keystore.Validated{}, keystore.Errorf(codeClusterInUse, "CloudHSM cluster %s is already associated with custom key store %s.", *g.CloudHsmClusterID, r.ID)
			}
		}
		if !clusterActive(info) {
			return keystore.Validated{}, notActive(info)
		}
		if err := twoZones(info); err != nil {
			return keystore.Validated{}, err
		}
		cfg.CloudHsmClusterID = *g.CloudHsmClusterID
	}
	if given(g.KeyStorePassword) {
		sec.Password, sec.PendingPassword = *g.KeyStorePassword, ""
	}
	return keystore.Validated{Config: cfg, Secret: sec, BackupHistory: BackupHistory(cfg.ClusterCertificate)}, nil
}

func (d *Driver) validateCreate(ctx context.Context, ch keystore.Change) (keystore.Validated, error) {
	g := ch.Given
	clusterID, anchor, password := val(g.CloudHsmClusterID), val(g.TrustAnchorCertificate), val(g.KeyStorePassword)
	if clusterID == "" || anchor == "" || password == "" {
		return keystore.Validated{}, keystore.Errorf(codeValidation, "A CloudHSM key store needs CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword.")
	}
	if val(g.XksProxyUriEndpoint) != "" || val(g.XksProxyUriPath) != "" || val(g.XksProxyConnectivity) != "" || val(g.XksProxyVpcEndpointServiceName) != "" || val(g.XksAccessKeyID) != "" {
		return keystore.Validated{}, keystore.Errorf(codeValidation, "XKS proxy parameters are not valid for a custom key store of type AWS_CLOUDHSM.")
	}
	info, err := d.cluster(ctx, clusterID)
	if err != nil {
		return keystore.Validated{}, err
	}
	for _, r := range ch.Others {
		if r.Type != keystore.TypeCloudHSM {
			continue
		}
		if r.Config.CloudHsmClusterID == clusterID || (info.ClusterCertificatePEM != "" && sameCert(r.Config.ClusterCertificate, info.ClusterCertificatePEM)) {
			return keystore.Validated{}, keystore.Errorf(codeClusterInUse, "CloudHSM cluster %s, or a cluster that shares its backup history, is already associated with custom key store %s.", clusterID, r.ID)
		}
	}
	if !clusterActive(info) {
		return keystore.Validated{}, notActive(info)
	}
	if err := twoZones(info); err != nil {
		return keystore.Validated{}, err
	}
	if !sameCert(info.TrustAnchorPEM, anchor) {
		return keystore.Validated{}, keystore.Errorf(codeIncorrectTrustAnchor, "The trust anchor certificate does not match the trust anchor of CloudHSM cluster %s.", clusterID)
	}
	cfg := keystore.Config{CloudHsmClusterID: clusterID, TrustAnchorCertificate: anchor, ClusterCertificate: info.ClusterCertificatePEM}
	return keystore.Validated{Config: cfg, Secret: keystore.Secret{Password: password}, BackupHistory: BackupHistory(cfg.ClusterCertificate)}, nil
}

// Repeats reports whether a create repeats an existing DISCONNECTED store
// (same name, cluster, trust anchor and password): AWS then returns that
// store's id instead of failing.
func (d *Driver) Repeats(existing keystore.Store, state string, name string, g keystore.Settings) bool {
	return existing.Type == keystore.TypeCloudHSM && existing.Name == name && state == stateDisconnected &&
		existing.Config.CloudHsmClusterID == val(g.CloudHsmClusterID) &&
		sameCert(existing.Config.TrustAnchorCertificate, val(g.TrustAnchorCertificate)) &&
		existing.Secret.Password != "" && existing.Secret.Password == val(g.KeyStorePassword)
}

// Probe has nothing to contact beyond what Validate looked up.
func (d *Driver) Probe(context.Context, keystore.Change, keystore.Validated) error { return nil }

// CheckConnect raises what ConnectCustomKeyStore throws at once: no control
// plane, or a cluster that is not active. A missing cluster is reported
// asynchronously, as CLUSTER_NOT_FOUND.
func (d *Driver) CheckConnect(ctx context.Context, s keystore.Store) error {
	c := d.control()
	if c == nil {
		return keystore.Errorf(codeClusterNotFound, "CloudHSM cluster '%s' does not exist (this keyhold has no HSM cluster control plane).", s.Config.CloudHsmClusterID)
	}
	info, err := c.Cluster(ctx, s.Config.CloudHsmClusterID)
	if errors.Is(err, hsm.ErrClusterNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hsmstore.CheckConnect: %w", err)
	}
	if !clusterActive(info) {
		return notActive(info)
	}
	return nil
}

const passwordChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newPassword makes the 32-character password only KMS knows.
func newPassword() (string, error) {
	b := make([]byte, 32)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(passwordChars))))
		if err != nil {
			return "", err
		}
		b[i] = passwordChars[n.Int64()]
	}
	return string(b), nil
}

func connectionCode(err error) string {
	switch {
	case errors.Is(err, hsm.ErrClusterNotFound):
		return "CLUSTER_NOT_FOUND"
	case errors.Is(err, hsm.ErrNoActiveHSM):
		return "INSUFFICIENT_CLOUDHSM_HSMS"
	case errors.Is(err, hsm.ErrUserNotFound):
		return "USER_NOT_FOUND"
	case errors.Is(err, hsm.ErrInvalidCredentials):
		return "INVALID_CREDENTIALS"
	case errors.Is(err, hsm.ErrUserLockedOut):
		return "USER_LOCKED_OUT"
	case errors.Is(err, hsm.ErrUserLoggedIn):
		return "USER_LOGGED_IN"
	case errors.Is(err, hsm.ErrNetwork):
		return "NETWORK_ERRORS"
	}
	return "INTERNAL_ERROR"
}

func connErr(code string, cause error) error { return &keystore.ConnectError{Code: code, Cause: cause} }

// Connect logs in as kmsuser, rotates its password to one only KMS knows
// (saved as pending first, so a crash between C_SetPIN and the save loses
// nothing), and keeps the session.
func (d *Driver) Connect(ctx context.Context, s keystore.Store, save keystore.SaveSecret) error {
	c := d.control()
	if c == nil {
		return connErr("CLUSTER_NOT_FOUND", errors.New("no HSM cluster control plane"))
	}
	sec := s.Secret
	info, err := c.Cluster(ctx, s.Config.CloudHsmClusterID)
	if err != nil {
		return connErr(connectionCode(err), err)
	}
	active := 0
	for _, h := range info.HSMs {
		if h.State == "ACTIVE" {
			active++
		}
	}
	if active == 0 {
		return connErr("INSUFFICIENT_CLOUDHSM_HSMS", fmt.Errorf("cluster %s has no active HSM", info.ID))
	}
	sess, err := c.LoginAs(ctx, s.Config.CloudHsmClusterID, kmsUser, sec.Password, clientName(s))
	if errors.Is(err, hsm.ErrInvalidCredentials) && sec.PendingPassword != "" {
		// A rotation was interrupted after C_SetPIN: the pending password is current.
		sess, err = c.LoginAs(ctx, s.Config.CloudHsmClusterID, kmsUser, sec.PendingPassword, clientName(s))
		if err == nil {
			sec.Password = sec.PendingPassword
		}
	}
	if err != nil {
		d.log.Info("kmsuser login failed", "store", s.ID, "cluster", s.Config.CloudHsmClusterID, "err", err)
		return connErr(connectionCode(err), err)
	}
	next, err := newPassword()
	if err != nil {
		sess.Logout(ctx)
		return connErr("INTERNAL_ERROR", err)
	}
	sec.PendingPassword = next
	if err := save(ctx, sec); err != nil {
		sess.Logout(ctx)
		return connErr("INTERNAL_ERROR", err)
	}
	if err := sess.ChangePassword(ctx, next); err != nil {
		d.log.Warn("rotating kmsuser password failed", "store", s.ID, "err", err)
		sess.Logout(ctx)
		return connErr(connectionCode(err), err)
	}
	sec.Password, sec.PendingPassword = next, ""
	if err := save(ctx, sec); err != nil {
		d.log.Error("saving rotated kmsuser password failed; the pending copy is kept", "store", s.ID, "err", err)
	}
	d.attach(s.ID, sess)
	return nil
}

// Join opens this replica's own kmsuser session to a store another replica
// connected: a session of the store's login with the password that replica
// rotated to, and no rotation (the password is the store's, shared).
func (d *Driver) Join(ctx context.Context, s keystore.Store) error {
	c := d.control()
	if c == nil {
		return connErr("CLUSTER_NOT_FOUND", errors.New("no HSM cluster control plane"))
	}
	sess, err := c.LoginAs(ctx, s.Config.CloudHsmClusterID, kmsUser, s.Secret.Password, clientName(s))
	if errors.Is(err, hsm.ErrInvalidCredentials) && s.Secret.PendingPassword != "" {
		sess, err = c.LoginAs(ctx, s.Config.CloudHsmClusterID, kmsUser, s.Secret.PendingPassword, clientName(s))
	}
	if err != nil {
		d.log.Info("kmsuser session of this replica failed", "store", s.ID, "cluster", s.Config.CloudHsmClusterID, "err", err)
		return connErr(connectionCode(err), err)
	}
	if old := d.detach(s.ID); old != nil {
		old.Logout(ctx)
	}
	d.attach(s.ID, sess)
	return nil
}

// Reconfigure has nothing to do: a connected store's settings cannot
// change (only its name).
func (d *Driver) Reconfigure(context.Context, keystore.Store) error { return nil }

// Disconnect logs out of the store's session. A replica with no session
// of its own (another one connected the store) releases the store's login.
func (d *Driver) Disconnect(ctx context.Context, s keystore.Store) error {
	if sess := d.detach(s.ID); sess != nil {
		if err := sess.Logout(ctx); err != nil {
			d.log.Warn("kmsuser logout", "store", s.ID, "err", err)
			return err
		}
		return nil
	}
	if c := d.control(); c != nil && s.Config.CloudHsmClusterID != "" {
		return c.ReleaseLogin(ctx, s.Config.CloudHsmClusterID, clientName(s))
	}
	return nil
}

// CreateKey generates the key's AES-256 key in the cluster, labelled with
// the key ARN, after checking the two-zone rule.
func (d *Driver) CreateKey(ctx context.Context, s keystore.Store, k keystore.KeyRef, _ keystore.Call) (keystore.Material, error) {
	info, err := d.cluster(ctx, s.Config.CloudHsmClusterID)
	if err != nil {
		return keystore.Material{}, err
	}
	if err := twoZones(info); err != nil {
		return keystore.Material{}, err
	}
	sess, err := d.session(s.ID)
	if err != nil {
		return keystore.Material{}, keystore.Errorf(codeStoreInvalidState, "Custom key store %s is %s; keys can be created only in a CONNECTED custom key store.", s.ID, stateDisconnected)
	}
	if _, err := sess.GenerateKey(ctx, k.ARN); err != nil {
		return keystore.Material{}, &keystore.Error{Code: codeStoreInvalidState, Message: "KMS cannot create a key in the CloudHSM cluster of custom key store " + s.ID + ".", Cause: err}
	}
	backing := make([]byte, 16)
	if _, err := rand.Read(backing); err != nil {
		return keystore.Material{}, err
	}
	return keystore.Material{BackingKeyID: backing}, nil
}

// DestroyKey destroys a key's AES key in its cluster (needs the store
// connected).
func (d *Driver) DestroyKey(ctx context.Context, k keystore.KeyRef) error {
	sess, err := d.session(k.CustomKeyStoreID)
	if err != nil {
		return err
	}
	return sess.DestroyKey(ctx, k.ARN)
}

// Health checks a connected store's cluster: it has an active HSM, and the
// session answers (one random byte from the cluster).
func (d *Driver) Health(ctx context.Context, storeID string) error {
	sess, err := d.session(storeID)
	if err != nil {
		return connErr("INTERNAL_ERROR", err)
	}
	if _, err := sess.GenerateRandom(ctx, 1); err != nil {
		if errors.Is(err, hsm.ErrNoActiveHSM) {
			return connErr("INSUFFICIENT_CLOUDHSM_HSMS", err)
		}
		return connErr(connectionCode(err), err)
	}
	return nil
}

// Unavailable is the message for a key whose cluster cannot serve it.
func (d *Driver) Unavailable(k keystore.KeyRef) string {
	return fmt.Sprintf("KMS cannot communicate with the CloudHSM cluster of custom key store %s for %s.", k.CustomKeyStoreID, k.ARN)
}

// GenerateRandom returns n random bytes from the store's cluster.
func (d *Driver) GenerateRandom(ctx context.Context, storeID string, n int) ([]byte, error) {
	sess, err := d.session(storeID)
	if err != nil {
		return nil, keystore.Errorf(codeStoreInvalidState, "Custom key store %s is %s; GenerateRandom needs a CONNECTED custom key store.", storeID, stateDisconnected)
	}
	b, err := sess.GenerateRandom(ctx, n)
	if err != nil {
		return nil, &keystore.Error{Code: codeInvalidState, Message: "KMS cannot communicate with the CloudHSM cluster of custom key store " + storeID + ".", Cause: err}
	}
	return b, nil
}

// Encrypt encrypts in the cluster: payload = fields(iv, ciphertext||tag).
func (d *Driver) Encrypt(ctx context.Context, k keystore.KeyRef, _ keystore.Call, plaintext, aad []byte) ([]byte, error) {
	s, err := d.session(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	iv, ct, err := s.Encrypt(ctx, k.ARN, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("hsmstore.Encrypt: %w", err)
	}
	return blob.Fields(iv, ct), nil
}

// Decrypt decrypts in the cluster.
func (d *Driver) Decrypt(ctx context.Context, k keystore.KeyRef, _ keystore.Call, payload, aad []byte) ([]byte, error) {
	f, err := blob.SplitFields(payload, 2)
	if err != nil {
		return nil, keystore.ErrInvalidCiphertext
	}
	s, err := d.session(k.CustomKeyStoreID)
	if err != nil {
		return nil, err
	}
	pt, err := s.Decrypt(ctx, k.ARN, f[0], f[1], aad)
	if errors.Is(err, hsm.ErrDecrypt) {
		return nil, keystore.ErrInvalidCiphertext
	}
	if err != nil {
		return nil, fmt.Errorf("hsmstore.Decrypt: %w", err)
	}
	return pt, nil
}
