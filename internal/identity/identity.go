// Package identity holds accounts, principals and their access keys: the
// first-start bootstrap (an account, an admin principal, a credentials file)
// and the access-key lookup SigV4 verification needs.
//
// Secret access keys rest in the store only sealed by the root key; the one
// plaintext copy on disk is the 0600 credentials file the operator asked for.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/sigv4"
	"github.com/keyhold/keyhold/internal/store"
)

// Principal is who signed a request (keyhold's one principal type).
type Principal = principal.Principal

// Errors of Authenticate beyond sigv4's.
var (
	ErrExpiredToken = errors.New("The security token included in the request is expired")
	ErrInvalidToken = errors.New("The security token included in the request is invalid.")
)

// Directory looks principals up by access key. Safe for concurrent use.
type Directory struct {
	st   store.Store
	root *rootkey.Key

	mu       sync.RWMutex
	cache    map[string]entry
	policies map[string][]string // principal ARN -> identity policy documents
}

type entry struct {
	secret    string
	principal Principal
	// expires is set for temporary credentials.
	expires time.Time
	// sessionTokenHash is the SHA-256 of the session token temporary
	// credentials must present.
	sessionTokenHash []byte
}

// New returns a Directory over st.
func New(st store.Store, root *rootkey.Key) *Directory {
	return &Directory{st: st, root: root, cache: make(map[string]entry), policies: make(map[string][]string)}
}

func secretAAD(id string) []byte { return []byte("keyhold-access-key:" + id) }

func (d *Directory) load(ctx context.Context, id string) (entry, error) {
	d.mu.RLock()
	e, ok := d.cache[id]
	d.mu.RUnlock()
	if ok {
		return e, nil
	}
	k, err := d.st.GetAccessKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !k.Active) || (err == nil && !k.Expires.IsZero() && time.Now().After(k.Expires.Add(time.Hour))) {
		return entry{}, fmt.Errorf("identity: access key: %w", sigv4.ErrUnknownAccessKey)
	}
	if err != nil {
		return entry{}, fmt.Errorf("identity: %w", err)
	}
	sec, err := d.root.Open(k.SealedSecret, secretAAD(k.ID))
	if err != nil {
		return entry{}, fmt.Errorf("identity: unseal access key: %w", err)
	}
	e = entry{secret: string(sec), principal: Principal{AccountID: k.AccountID, ARN: k.PrincipalARN, AccessKeyID: k.ID,
		RoleARN: k.RoleARN}, expires: k.Expires, sessionTokenHash: k.SessionTokenHash}
	owner := k.PrincipalARN
	if k.RoleARN != "" {
		owner = k.RoleARN
	}
	if p, err := d.st.GetPrincipal(ctx, owner); err == nil {
		e.principal.UserID = p.ID
		if k.RoleARN != "" {
			e.principal.UserID = p.ID + ":" + k.PrincipalARN[strings.LastIndex(k.PrincipalARN, "/")+1:]
		}
	}
	d.mu.Lock()
	d.cache[id] = e
	d.mu.Unlock()
	return e, nil
}

// Lookup is the sigv4.Lookup for this directory.
func (d *Directory) Lookup(ctx context.Context, accessKeyID string) (string, error) {
	e, err := d.load(ctx, accessKeyID)
	return e.secret, err
}

// Principal returns who owns an access key.
func (d *Directory) Principal(ctx context.Context, accessKeyID string) (Principal, error) {
	e, err := d.load(ctx, accessKeyID)
	return e.principal, err
}

// Authenticate returns who owns a verified access key, checking the session
// token that temporary credentials must present (and only they may).
func (d *Directory) Authenticate(ctx context.Context, accessKeyID, sessionToken string, now time.Time) (Principal, error) {
	e, err := d.load(ctx, accessKeyID)
	if err != nil {
		return Principal{}, err
	}
	p := e.principal
	if len(e.sessionTokenHash) == 0 {
		if sessionToken != "" {
			return Principal{}, ErrInvalidToken
		}
		return p, nil
	}
	h := sha256.Sum256([]byte(sessionToken))
	if sessionToken == "" || subtle.ConstantTimeCompare(h[:], e.sessionTokenHash) != 1 {
		return Principal{}, ErrInvalidToken
	}
	if now.After(e.expires) {
		return Principal{}, ErrExpiredToken
	}
	return p, nil
}

// Forget drops cached access keys (after a key is deactivated or deleted).
func (d *Directory) Forget(accessKeyIDs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(accessKeyIDs) == 0 {
		d.cache = make(map[string]entry)
		return
	}
	for _, id := range accessKeyIDs {
		delete(d.cache, id)
	}
}

// Credentials is an access key pair, printed only into the credentials file.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

func (c Credentials) String() string { return "Credentials{" + c.AccessKeyID + ", secret redacted}" }

// NewAccessKey creates and stores an access key for a principal.
func (d *Directory) NewAccessKey(ctx context.Context, p Principal, now time.Time) (Credentials, error) {
	raw := make([]byte, 10)
	sec := make([]byte, 30)
	if _, err := rand.Read(raw); err != nil {
		return Credentials{}, err
	}
	if _, err := rand.Read(sec); err != nil {
		return Credentials{}, err
	}
	c := Credentials{
		AccessKeyID:     "AKIA" + base32.StdEncoding.EncodeToString(raw),
		SecretAccessKey: base64.StdEncoding.EncodeToString(sec),
	}
	sealed, err := d.root.Seal([]byte(c.SecretAccessKey), secretAAD(c.AccessKeyID))
	if err != nil {
		return Credentials{}, err
	}
	err = d.st.PutAccessKey(ctx, store.AccessKey{ID: c.AccessKeyID, AccountID: p.AccountID, PrincipalARN: p.ARN,
		SealedSecret: sealed, Active: true, Created: now})
	return c, err
}

// AdminUserName is the name of the principal created at first start.
const AdminUserName = "keyhold-admin"

// AdminPolicyName is the identity policy that lets the admin do everything
// in its account.
const AdminPolicyName = "AdministratorAccess"

const adminPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"AdministratorAccess","Effect":"Allow","Action":"*","Resource":"*"}]}`

// createAdmin makes an account's admin user, its all-allowing identity
// policy and an access key. A rerun after a crash replaces the user.
func (d *Directory) createAdmin(ctx context.Context, account string, now time.Time) (Credentials, error) {
	arn := UserARN(account, AdminUserName)
	d.st.DeletePrincipal(ctx, arn) // leftovers of an interrupted first start
	if err := d.st.CreatePrincipal(ctx, store.Principal{ARN: arn, AccountID: account, Type: "user", Name: AdminUserName,
		ID: uniqueID("AIDA"), Created: now}); err != nil {
		return Credentials{}, err
	}
	if err := d.st.PutPrincipalPolicy(ctx, store.PrincipalPolicy{PrincipalARN: arn, Name: AdminPolicyName, Document: adminPolicy}); err != nil {
		return Credentials{}, err
	}
	return d.NewAccessKey(ctx, Principal{AccountID: account, ARN: arn}, now)
}

// Bootstrap makes sure an account and an admin principal exist. On first
// start it creates them and writes credPath (aws shared-credentials format,
// profile default, mode 0600). It returns the account id.
func (d *Directory) Bootstrap(ctx context.Context, credPath, region string, now time.Time) (string, error) {
	return d.BootstrapAccount(ctx, credPath, region, "", now)
}

// BootstrapAccount is Bootstrap with the first account's id chosen by the
// caller (12 digits; "" picks a random one). It returns the existing
// account, whatever its id, when there is one.
func (d *Directory) BootstrapAccount(ctx context.Context, credPath, region, account string, now time.Time) (string, error) {
	accts, err := d.st.ListAccounts(ctx)
	if err != nil {
		return "", fmt.Errorf("identity.Bootstrap: %w", err)
	}
	if len(accts) > 0 {
		return accts[0].ID, nil
	}
	if account == "" {
		n, err := rand.Int(rand.Reader, big.NewInt(9e11))
		if err != nil {
			return "", err
		}
		account = fmt.Sprintf("%012d", n.Int64()+1e11)
	}
	c, err := d.createAdmin(ctx, account, now)
	if err != nil {
		return "", fmt.Errorf("identity.Bootstrap: %w", err)
	}
	body := fmt.Sprintf("# keyhold admin credentials for account %s (%s)\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n",
		account, UserARN(account, AdminUserName), c.AccessKeyID, c.SecretAccessKey, region)
	if err := writeFileSync(credPath, []byte(body), 0o600); err != nil {
		return "", fmt.Errorf("identity.Bootstrap: %w", err)
	}
	// The account row is written last: a crash before it re-runs the
	// bootstrap, which rewrites the credentials file with a new key.
	if err := d.st.CreateAccount(ctx, store.Account{ID: account, Created: now}); err != nil {
		return "", fmt.Errorf("identity.Bootstrap: %w", err)
	}
	return account, nil
}

func writeFileSync(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// CheckRootKey opens one sealed secret of the account's admin with the
// root key: replicas of one database must share the root key, and a
// replica given another key must refuse to start rather than fail every
// request.
func (d *Directory) CheckRootKey(ctx context.Context, account string) error {
	keys, err := d.st.ListAccessKeys(ctx, UserARN(account, AdminUserName))
	if err != nil {
		return fmt.Errorf("identity.CheckRootKey: %w", err)
	}
	for _, k := range keys {
		if _, err := d.root.Open(k.SealedSecret, secretAAD(k.ID)); err != nil {
			return fmt.Errorf("identity.CheckRootKey: %s does not open the database's secrets (another root key sealed them)", d.root)
		}
		return nil
	}
	return nil
}

// Invalidate drops what the directory caches about a row another replica
// changed (tables access_keys, principals, principal_policies; a and b as
// postgres.Change names them).
func (d *Directory) Invalidate(table, a, b string) {
	switch table {
	case "access_keys":
		d.Forget(b)
	case "principals":
		d.Forget()
		d.forgetPolicies()
	case "principal_policies":
		d.forgetPolicies()
	}
}

// ForgetAll drops every cached access key and policy list.
func (d *Directory) ForgetAll() {
	d.Forget()
	d.forgetPolicies()
}
