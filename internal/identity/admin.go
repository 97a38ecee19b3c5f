package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Error is an identity-management failure with an IAM/STS error code and a
// message safe for the client.
type Error struct {
	Code    string // NoSuchEntity, EntityAlreadyExists, ValidationError, MalformedPolicyDocument, AccessDenied, LimitExceeded
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func idErr(code string, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

// UserARN and RoleARN build IAM ARNs.
func UserARN(account, name string) string { return "arn:aws:iam::" + account + ":user/" + name }
func RoleARN(account, name string) string { return "arn:aws:iam::" + account + ":role/" + name }

func uniqueID(prefix string) string {
	b := make([]byte, 11)
	rand.Read(b)
	return prefix + base32.StdEncoding.EncodeToString(b)[:17]
}

// PolicyChecker validates a policy document (the policy package plugs in);
// nil accepts any JSON object.
type PolicyChecker func(doc string, identity bool) error

// Admin manages principals, their access keys and identity policies, and
// issues temporary credentials. Safe for concurrent use.
type Admin struct {
	dir   *Directory
	st    store.Store
	check PolicyChecker
	now   func() time.Time
}

// NewAdmin builds an Admin over a Directory.
func NewAdmin(dir *Directory, check PolicyChecker) *Admin {
	return &Admin{dir: dir, st: dir.st, check: check, now: time.Now}
}

func (a *Admin) checkPolicy(doc string, identity bool) error {
	if a.check == nil {
		return nil
	}
	if err := a.check(doc, identity); err != nil {
		return idErr("MalformedPolicyDocument", 400, "%v", err)
	}
	return nil
}

// CreateUser creates an IAM user in the account.
func (a *Admin) CreateUser(ctx context.Context, account, name string) (store.Principal, error) {
	return a.createPrincipal(ctx, account, "user", name, "")
}

// CreateRole creates a role that principals allowed by trustPolicy may assume.
func (a *Admin) CreateRole(ctx context.Context, account, name, trustPolicy string) (store.Principal, error) {
	if trustPolicy == "" {
		return store.Principal{}, idErr("ValidationError", 400, "AssumeRolePolicyDocument is required.")
	}
	if err := a.checkPolicy(trustPolicy, false); err != nil {
		return store.Principal{}, err
	}
	return a.createPrincipal(ctx, account, "role", name, trustPolicy)
}

func (a *Admin) createPrincipal(ctx context.Context, account, typ, name, trust string) (store.Principal, error) {
	if !nameRE.MatchString(name) {
		return store.Principal{}, idErr("ValidationError", 400, "The specified value for %sName is invalid: it must be 1-64 characters of letters, digits and +=,.@_-.", title(typ))
	}
	p := store.Principal{AccountID: account, Type: typ, Name: name, TrustPolicy: trust, Created: a.now().UTC().Truncate(time.Second)}
	if typ == "user" {
		p.ARN, p.ID = UserARN(account, name), uniqueID("AIDA")
	} else {
		p.ARN, p.ID = RoleARN(account, name), uniqueID("AROA")
	}
	if err := a.st.CreatePrincipal(ctx, p); err != nil {
		if errors.Is(err, store.ErrExists) {
			return p, idErr("EntityAlreadyExists", 409, "%s with name %s already exists.", title(typ), name)
		}
		return p, err
	}
	return p, nil
}

// GetPrincipal returns a user or role of the account.
func (a *Admin) GetPrincipal(ctx context.Context, account, typ, name string) (store.Principal, error) {
	arn := UserARN(account, name)
	if typ == "role" {
		arn = RoleARN(account, name)
	}
	p, err := a.st.GetPrincipal(ctx, arn)
	if errors.Is(err, store.ErrNotFound) {
		return p, idErr("NoSuchEntity", 404, "The %s with name %s cannot be found.", typ, name)
	}
	return p, err
}

// ListPrincipals lists the account's users or roles.
func (a *Admin) ListPrincipals(ctx context.Context, account, typ string) ([]store.Principal, error) {
	all, err := a.st.ListPrincipals(ctx, account)
	if err != nil {
		return nil, err
	}
	var out []store.Principal
	for _, p := range all {
		if p.Type == typ {
			out = append(out, p)
		}
	}
	return out, nil
}

// DeletePrincipal deletes a user or role with its policies and keys.
func (a *Admin) DeletePrincipal(ctx context.Context, account, typ, name string) error {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return err
	}
	keys, _ := a.st.ListAccessKeys(ctx, p.ARN)
	if err := a.st.DeletePrincipal(ctx, p.ARN); err != nil {
		return err
	}
	for _, k := range keys {
		a.dir.Forget(k.ID)
	}
	a.dir.Forget() // sessions of a deleted role
	a.dir.forgetPolicies()
	return nil
}

// AccessKeyInfo describes an access key without its secret.
type AccessKeyInfo struct {
	ID, UserName, Status string
	Created              time.Time
}

// CreateAccessKey makes a new long-term key for a user (at most two, as IAM).
func (a *Admin) CreateAccessKey(ctx context.Context, account, userName string) (Credentials, AccessKeyInfo, error) {
	p, err := a.GetPrincipal(ctx, account, "user", userName)
	if err != nil {
		return Credentials{}, AccessKeyInfo{}, err
	}
	keys, err := a.st.ListAccessKeys(ctx, p.ARN)
	if err != nil {
		return Credentials{}, AccessKeyInfo{}, err
	}
	if len(keys) >= 2 {
		return Credentials{}, AccessKeyInfo{}, idErr("LimitExceeded", 409, "Cannot exceed quota for AccessKeysPerUser: 2")
	}
	now := a.now().UTC().Truncate(time.Second)
	c, err := a.dir.NewAccessKey(ctx, Principal{AccountID: account, ARN: p.ARN}, now)
	return c, AccessKeyInfo{ID: c.AccessKeyID, UserName: userName, Status: "Active", Created: now}, err
}

// ListAccessKeys lists a user's access keys.
func (a *Admin) ListAccessKeys(ctx context.Context, account, userName string) ([]AccessKeyInfo, error) {
	p, err := a.GetPrincipal(ctx, account, "user", userName)
	if err != nil {
		return nil, err
	}
	keys, err := a.st.ListAccessKeys(ctx, p.ARN)
	if err != nil {
		return nil, err
	}
	out := make([]AccessKeyInfo, 0, len(keys))
	for _, k := range keys {
		st := "Active"
		if !k.Active {
			st = "Inactive"
		}
		out = append(out, AccessKeyInfo{ID: k.ID, UserName: userName, Status: st, Created: k.Created})
	}
	return out, nil
}

func (a *Admin) userKey(ctx context.Context, account, userName, id string) (store.AccessKey, error) {
	p, err := a.GetPrincipal(ctx, account, "user", userName)
	if err != nil {
		return store.AccessKey{}, err
	}
	k, err := a.st.GetAccessKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && k.PrincipalARN != p.ARN) {
		return k, idErr("NoSuchEntity", 404, "The Access Key with id %s cannot be found.", id)
	}
	return k, err
}

// UpdateAccessKey activates or deactivates a key.
func (a *Admin) UpdateAccessKey(ctx context.Context, account, userName, id, status string) error {
	if status != "Active" && status != "Inactive" {
		return idErr("ValidationError", 400, "Status must be Active or Inactive.")
	}
	k, err := a.userKey(ctx, account, userName, id)
	if err != nil {
		return err
	}
	k.Active = status == "Active"
	if err := a.st.PutAccessKey(ctx, k); err != nil {
		return err
	}
	a.dir.Forget(id)
	return nil
}

// DeleteAccessKey deletes a key.
func (a *Admin) DeleteAccessKey(ctx context.Context, account, userName, id string) error {
	if _, err := a.userKey(ctx, account, userName, id); err != nil {
		return err
	}
	if err := a.st.DeleteAccessKey(ctx, id); err != nil {
		return err
	}
	a.dir.Forget(id)
	return nil
}

// PutPolicy attaches (or replaces) a named identity policy on a user or role.
func (a *Admin) PutPolicy(ctx context.Context, account, typ, name, policyName, doc string) error {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return err
	}
	if !nameRE.MatchString(policyName) {
		return idErr("ValidationError", 400, "The specified value for policyName is invalid.")
	}
	if err := a.checkPolicy(doc, true); err != nil {
		return err
	}
	defer a.dir.forgetPolicies()
	return a.st.PutPrincipalPolicy(ctx, store.PrincipalPolicy{PrincipalARN: p.ARN, Name: policyName, Document: doc})
}

// DeletePolicy detaches a named policy.
func (a *Admin) DeletePolicy(ctx context.Context, account, typ, name, policyName string) error {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return err
	}
	defer a.dir.forgetPolicies()
	if err := a.st.DeletePrincipalPolicy(ctx, p.ARN, policyName); errors.Is(err, store.ErrNotFound) {
		return idErr("NoSuchEntity", 404, "The %s policy with name %s cannot be found.", typ, policyName)
	} else if err != nil {
		return err
	}
	return nil
}

// GetPolicy returns a named policy document.
func (a *Admin) GetPolicy(ctx context.Context, account, typ, name, policyName string) (string, error) {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return "", err
	}
	ps, err := a.st.ListPrincipalPolicies(ctx, p.ARN)
	if err != nil {
		return "", err
	}
	for _, pp := range ps {
		if pp.Name == policyName {
			return pp.Document, nil
		}
	}
	return "", idErr("NoSuchEntity", 404, "The %s policy with name %s cannot be found.", typ, policyName)
}

// ListPolicies lists the names of a principal's policies.
func (a *Admin) ListPolicies(ctx context.Context, account, typ, name string) ([]string, error) {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return nil, err
	}
	ps, err := a.st.ListPrincipalPolicies(ctx, p.ARN)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, pp := range ps {
		out[i] = pp.Name
	}
	return out, nil
}

// SessionCredentials are temporary credentials from AssumeRole.
type SessionCredentials struct {
	Credentials
	SessionToken string
	Expiration   time.Time
	AssumedARN   string
	AssumedID    string
}

func (c SessionCredentials) String() string {
	return "SessionCredentials{" + c.AccessKeyID + ", secrets redacted}"
}

// TrustCheck decides whether caller may assume a role under its trust
// policy (the policy engine plugs in); nil allows same-account callers only.
type TrustCheck func(ctx context.Context, trustPolicy, roleARN string, caller Principal) bool

// AssumeRole issues temporary credentials for role roleARN to caller.
func (a *Admin) AssumeRole(ctx context.Context, caller Principal, roleARN, sessionName string, duration time.Duration, trust TrustCheck) (SessionCredentials, error) {
	if duration == 0 {
		duration = time.Hour
	}
	if duration < 15*time.Minute || duration > 12*time.Hour {
		return SessionCredentials{}, idErr("ValidationError", 400, "The requested DurationSeconds must be between 900 and 43200 seconds.")
	}
	if !regexp.MustCompile(`^[\w+=,.@-]{2,64}$`).MatchString(sessionName) {
		return SessionCredentials{}, idErr("ValidationError", 400, "RoleSessionName must be 2-64 characters of letters, digits and +=,.@_-.")
	}
	role, err := a.st.GetPrincipal(ctx, roleARN)
	if err != nil || role.Type != "role" {
		return SessionCredentials{}, idErr("AccessDenied", 403, "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.ARN, roleARN)
	}
	allowed := caller.AccountID == role.AccountID
	if trust != nil {
		allowed = trust(ctx, role.TrustPolicy, role.ARN, caller)
	}
	if !allowed {
		return SessionCredentials{}, idErr("AccessDenied", 403, "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.ARN, roleARN)
	}
	raw := make([]byte, 10)
	sec := make([]byte, 30)
	tok := make([]byte, 96)
	rand.Read(raw)
	rand.Read(sec)
	rand.Read(tok)
	now := a.now().UTC().Truncate(time.Second)
	sc := SessionCredentials{
		Credentials:  Credentials{AccessKeyID: "ASIA" + base32.StdEncoding.EncodeToString(raw), SecretAccessKey: base64.StdEncoding.EncodeToString(sec)},
		SessionToken: base64.StdEncoding.EncodeToString(tok),
		Expiration:   now.Add(duration),
		AssumedARN:   "arn:aws:sts::" + role.AccountID + ":assumed-role/" + role.Name + "/" + sessionName,
		AssumedID:    role.ID + ":" + sessionName,
	}
	sealed, err := a.dir.root.Seal([]byte(sc.SecretAccessKey), secretAAD(sc.AccessKeyID))
	if err != nil {
		return SessionCredentials{}, err
	}
	h := sha256.Sum256([]byte(sc.SessionToken))
	err = a.st.PutAccessKey(ctx, store.AccessKey{ID: sc.AccessKeyID, AccountID: role.AccountID, PrincipalARN: sc.AssumedARN,
		SealedSecret: sealed, Active: true, Created: now, SessionTokenHash: h[:], RoleARN: role.ARN, Expires: sc.Expiration})
	return sc, err
}

// CreateAccount makes a new account with an admin user and its access key
// (what first start does for the first account).
func (a *Admin) CreateAccount(ctx context.Context) (string, Credentials, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(9e11))
	if err != nil {
		return "", Credentials{}, err
	}
	account := fmt.Sprintf("%012d", n.Int64()+1e11)
	now := a.now().UTC().Truncate(time.Second)
	if err := a.st.CreateAccount(ctx, store.Account{ID: account, Created: now}); err != nil {
		return "", Credentials{}, err
	}
	c, err := a.dir.createAdmin(ctx, account, now)
	return account, c, err
}

// Policies returns the identity policy documents that apply to a principal
// (a session gets its role's). They are cached; Admin's changes invalidate.
func (d *Directory) Policies(ctx context.Context, p Principal) ([]string, error) {
	arn := p.ARN
	if p.RoleARN != "" {
		arn = p.RoleARN
	}
	d.mu.RLock()
	docs, ok := d.policies[arn]
	d.mu.RUnlock()
	if ok {
		return docs, nil
	}
	ps, err := d.st.ListPrincipalPolicies(ctx, arn)
	if err != nil {
		return nil, err
	}
	docs = make([]string, len(ps))
	for i, pp := range ps {
		docs[i] = pp.Document
	}
	d.mu.Lock()
	d.policies[arn] = docs
	d.mu.Unlock()
	return docs, nil
}

func (d *Directory) forgetPolicies() {
	d.mu.Lock()
	d.policies = make(map[string][]string)
	d.mu.Unlock()
}

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// GetPrincipalByARN returns a principal by ARN (the caller's own record).
func (a *Admin) GetPrincipalByARN(ctx context.Context, arn string) (store.Principal, error) {
	p, err := a.st.GetPrincipal(ctx, arn)
	if errors.Is(err, store.ErrNotFound) {
		return p, idErr("NoSuchEntity", 404, "The user with ARN %s cannot be found.", arn)
	}
	return p, err
}

// TagPrincipal adds or replaces tags on a user or role (at most 50).
func (a *Admin) TagPrincipal(ctx context.Context, account, typ, name string, tags []store.Tag) error {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if t.Key == "" || len(t.Key) > 128 || len(t.Value) > 256 || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return idErr("InvalidInput", 400, "Tag key %q is not valid: 1-128 characters, not beginning with aws:.", t.Key)
		}
		replaced := false
		for i := range p.Tags {
			if p.Tags[i].Key == t.Key {
				p.Tags[i].Value, replaced = t.Value, true
			}
		}
		if !replaced {
			p.Tags = append(p.Tags, t)
		}
	}
	if len(p.Tags) > 50 {
		return idErr("LimitExceeded", 409, "A %s can have at most 50 tags.", typ)
	}
	return a.st.UpdatePrincipal(ctx, p)
}

// UntagPrincipal removes tags by key.
func (a *Admin) UntagPrincipal(ctx context.Context, account, typ, name string, keys []string) error {
	p, err := a.GetPrincipal(ctx, account, typ, name)
	if err != nil {
		return err
	}
	var kept []store.Tag
	for _, t := range p.Tags {
		drop := false
		for _, k := range keys {
			drop = drop || k == t.Key
		}
		if !drop {
			kept = append(kept, t)
		}
	}
	p.Tags = kept
	return a.st.UpdatePrincipal(ctx, p)
}

// PrincipalTags returns the tags of the principal behind a caller (a
// session gets its role's), for aws:PrincipalTag conditions.
func (d *Directory) PrincipalTags(ctx context.Context, p Principal) (map[string]string, error) {
	arn := p.ARN
	if p.RoleARN != "" {
		arn = p.RoleARN
	}
	rec, err := d.st.GetPrincipal(ctx, arn)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tags := make(map[string]string, len(rec.Tags))
	for _, t := range rec.Tags {
		tags[t.Key] = t.Value
	}
	return tags, nil
}
