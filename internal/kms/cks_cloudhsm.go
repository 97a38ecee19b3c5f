package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"

	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/store"
)

// Clusters is what CloudHSM key stores need from the HSM cluster control
// plane (internal/hsm.Manager implements it).
type Clusters interface {
	Cluster(ctx context.Context, id string) (hsm.ClusterInfo, error)
	Login(ctx context.Context, clusterID, username, password string) (*hsm.UserSession, error)
}

// kmsUser is the crypto user KMS logs in as.
const kmsUser = "kmsuser"

func (c *customKeyStores) cluster(ctx context.Context, id string) (hsm.ClusterInfo, error) {
	if c.clusters == nil {
		return hsm.ClusterInfo{}, errorf(CloudHsmClusterNotFound, "CloudHSM cluster '%s' does not exist (this keyhold has no HSM cluster control plane).", id)
	}
	info, err := c.clusters.Cluster(ctx, id)
	if errors.Is(err, hsm.ErrClusterNotFound) {
		return info, errorf(CloudHsmClusterNotFound, "CloudHSM cluster '%s' does not exist.", id)
	}
	if err != nil {
		return info, internal("cluster", err)
	}
	return info, nil
}

func clusterActive(info hsm.ClusterInfo) bool {
	return info.State == "ACTIVE" || info.State == "DEGRADED"
}

func notActive(info hsm.ClusterInfo) error {
	return errorf(CloudHsmClusterNotActive, "CloudHSM cluster %s is %s; it must be ACTIVE.", info.ID, info.State)
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
		return errorf(CloudHsmClusterInvalidConfig, "CloudHSM cluster %s must have at least two active HSMs in different Availability Zones; it has active HSMs in %d.", info.ID, len(zones))
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

// backupHistory names a cluster's backup history for the store's UNIQUE
// constraint: clusters that share one have the same cluster certificate.
func backupHistory(clusterCertPEM string) string {
	der := pemDER(clusterCertPEM)
	if der == nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func sameCert(a, b string) bool {
	da, db := pemDER(a), pemDER(b)
	return da != nil && bytes.Equal(da, db)
}

func (c *customKeyStores) validateCloudHSMCreate(ctx context.Context, in CreateCustomKeyStoreInput, all []store.CustomKeyStore) (string, bool, error) {
	if in.CloudHsmClusterID == "" || in.TrustAnchorCertificate == "" || in.KeyStorePassword == "" {
		return "", false, errorf(Validation, "A CloudHSM key store needs CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword.")
	}
	if in.XksProxyUriEndpoint != "" || in.XksProxyUriPath != "" || in.XksProxyConnectivity != "" || in.XksProxyVpcEndpointServiceName != "" || in.XksAccessKeyID != "" {
		return "", false, errorf(Validation, "XKS proxy parameters are not valid for a custom key store of type AWS_CLOUDHSM.")
	}
	info, err := c.cluster(ctx, in.CloudHsmClusterID)
	if err != nil {
		return "", false, err
	}
	for _, r := range all {
		if r.Type != TypeCloudHSM {
			continue
		}
		cfg := c.config(r)
		if r.Name == in.Name && cfg.CloudHsmClusterID == in.CloudHsmClusterID && sameCert(cfg.TrustAnchorCertificate, in.TrustAnchorCertificate) {
			// Creating the same store again returns it, while it is disconnected.
			if st, _ := c.connState(r); st == Disconnected {
				sec, err := c.openSecret(r)
				if err == nil && sec.Password == in.KeyStorePassword {
					return r.ID, true, nil
				}
			}
		}
		if cfg.CloudHsmClusterID == in.CloudHsmClusterID || (info.ClusterCertificatePEM != "" && sameCert(cfg.ClusterCertificate, info.ClusterCertificatePEM)) {
			return "", false, errorf(CloudHsmClusterInUse, "CloudHSM cluster %s, or a cluster that shares its backup history, is already associated with custom key store %s.", in.CloudHsmClusterID, r.ID)
		}
	}
	if !clusterActive(info) {
		return "", false, notActive(info)
	}
	if err := twoZones(info); err != nil {
		return "", false, err
	}
	if !sameCert(info.TrustAnchorPEM, in.TrustAnchorCertificate) {
		return "", false, errorf(IncorrectTrustAnchor, "The trust anchor certificate does not match the trust anchor of CloudHSM cluster %s.", in.CloudHsmClusterID)
	}
	return "", false, nil
}

func (c *customKeyStores) config(r store.CustomKeyStore) cksConfig {
	var cfg cksConfig
	c.s.unmarshalConfig(r.Config, &cfg)
	return cfg
}

func (c *customKeyStores) cloudHSMConfig(ctx context.Context, in CreateCustomKeyStoreInput) (cksConfig, cksSecret, error) {
	info, err := c.cluster(ctx, in.CloudHsmClusterID)
	if err != nil {
		return cksConfig{}, cksSecret{}, err
	}
	return cksConfig{CloudHsmClusterID: in.CloudHsmClusterID, TrustAnchorCertificate: in.TrustAnchorCertificate,
		ClusterCertificate: info.ClusterCertificatePEM}, cksSecret{Password: in.KeyStorePassword}, nil
}

func (c *customKeyStores) updateCloudHSM(ctx context.Context, in UpdateCustomKeyStoreInput, state string, cfg *cksConfig, sec *cksSecret, all []store.CustomKeyStore) error {
	if in.XksProxyUriEndpoint != nil || in.XksProxyUriPath != nil || in.XksProxyConnectivity != nil ||
		in.XksProxyVpcEndpointServiceName != nil || in.XksProxyVpcEndpointServiceOwner != nil || in.XksAccessKeyID != nil {
		return errorf(Validation, "XKS proxy parameters are not valid for a custom key store of type AWS_CLOUDHSM.")
	}
	if (in.KeyStorePassword != nil || in.CloudHsmClusterID != nil) && state != Disconnected {
		return invalidState(in.ID, state, "only its name can change while it is "+state+"; disconnect it to change the password or the cluster.")
	}
	if in.CloudHsmClusterID != nil && *in.CloudHsmClusterID != cfg.CloudHsmClusterID {
		info, err := c.cluster(ctx, *in.CloudHsmClusterID)
		if err != nil {
			return err
		}
		if !sameCert(info.ClusterCertificatePEM, cfg.ClusterCertificate) {
			return errorf(CloudHsmClusterNotRelated, "CloudHSM cluster %s does not share a backup history with cluster %s.", *in.CloudHsmClusterID, cfg.CloudHsmClusterID)
		}
		for _, r := range all {
			if r.ID != in.ID && r.Type == TypeCloudHSM && c.config(r).CloudHsmClusterID == *in.CloudHsmClusterID {
				return errorf(CloudHsmClusterInUse, "CloudHSM cluster %s is already associated with custom key store %s.", *in.CloudHsmClusterID, r.ID)
			}
		}
		if !clusterActive(info) {
			return notActive(info)
		}
		if err := twoZones(info); err != nil {
			return err
		}
		cfg.CloudHsmClusterID = *in.CloudHsmClusterID
	}
	if in.KeyStorePassword != nil {
		sec.Password, sec.PendingPassword = *in.KeyStorePassword, ""
	}
	return nil
}

func (c *customKeyStores) checkConnectCloudHSM(ctx context.Context, cfg cksConfig) error {
	if c.clusters == nil {
		return errorf(CloudHsmClusterNotFound, "CloudHSM cluster '%s' does not exist (this keyhold has no HSM cluster control plane).", cfg.CloudHsmClusterID)
	}
	info, err := c.clusters.Cluster(ctx, cfg.CloudHsmClusterID)
	if errors.Is(err, hsm.ErrClusterNotFound) {
		return nil // reported asynchronously as CLUSTER_NOT_FOUND
	}
	if err != nil {
		return internal("ConnectCustomKeyStore", err)
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

// connectCloudHSM logs in as kmsuser, rotates its password to one only KMS
// knows, and keeps the session. It returns "" or a ConnectionErrorCode.
func (c *customKeyStores) connectCloudHSM(ctx context.Context, rec store.CustomKeyStore) string {
	cfg := c.config(rec)
	sec, err := c.openSecret(rec)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	info, err := c.clusters.Cluster(ctx, cfg.CloudHsmClusterID)
	if err != nil {
		return connectionCode(err)
	}
	active := 0
	for _, h := range info.HSMs {
		if h.State == "ACTIVE" {
			active++
		}
	}
	if active == 0 {
		return "INSUFFICIENT_CLOUDHSM_HSMS"
	}
	sess, err := c.clusters.Login(ctx, cfg.CloudHsmClusterID, kmsUser, sec.Password)
	if errors.Is(err, hsm.ErrInvalidCredentials) && sec.PendingPassword != "" {
		// A rotation was interrupted after C_SetPIN: the pending password is current.
		sess, err = c.clusters.Login(ctx, cfg.CloudHsmClusterID, kmsUser, sec.PendingPassword)
		if err == nil {
			sec.Password = sec.PendingPassword
		}
	}
	if err != nil {
		c.s.log.Info("kmsuser login failed", "store", rec.ID, "cluster", cfg.CloudHsmClusterID, "err", err)
		return connectionCode(err)
	}
	next, err := newPassword()
	if err != nil {
		sess.Logout(ctx)
		return "INTERNAL_ERROR"
	}
	sec.PendingPassword = next
	if err := c.saveSecret(ctx, rec, sec); err != nil {
		sess.Logout(ctx)
		return "INTERNAL_ERROR"
	}
	if err := sess.ChangePassword(ctx, next); err != nil {
		c.s.log.Warn("rotating kmsuser password failed", "store", rec.ID, "err", err)
		sess.Logout(ctx)
		return connectionCode(err)
	}
	sec.Password, sec.PendingPassword = next, ""
	if err := c.saveSecret(ctx, rec, sec); err != nil {
		c.s.log.Error("saving rotated kmsuser password failed; the pending copy is kept", "store", rec.ID, "err", err)
	}
	c.hsm.Attach(rec.ID, sess)
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

func (c *customKeyStores) prepareCloudHSMKey(ctx context.Context, k *store.Key, cfg cksConfig) error {
	info, err := c.cluster(ctx, cfg.CloudHsmClusterID)
	if err != nil {
		return err
	}
	if err := twoZones(info); err != nil {
		return err
	}
	sess, err := c.hsm.Session(k.CustomKeyStoreID)
	if err != nil {
		return invalidState(k.CustomKeyStoreID, Disconnected, "keys can be created only in a CONNECTED custom key store.")
	}
	arn := c.s.keyARN(k.AccountID, k.ID)
	if _, err := sess.GenerateKey(ctx, arn); err != nil {
		return &Error{Code: CustomKeyStoreInvalidState, Message: "KMS cannot create a key in the CloudHSM cluster of custom key store " + k.CustomKeyStoreID + ".", Cause: err}
	}
	k.CloudHsmClusterID = cfg.CloudHsmClusterID
	k.BackingKeyID = make([]byte, 16)
	rand.Read(k.BackingKeyID)
	return nil
}
