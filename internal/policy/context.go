package policy

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Condition keys keyhold fills. Keys are case-insensitive; Context stores
// them lower-cased.
const (
	KeyEncryptionContextPrefix = "kms:EncryptionContext:" // + the encryption context key
	KeyEncryptionContextKeys   = "kms:EncryptionContextKeys"
	KeyCallerAccount           = "kms:CallerAccount"
	KeyViaService              = "kms:ViaService"
	KeyKeyOrigin               = "kms:KeyOrigin"
	KeyKeySpec                 = "kms:KeySpec"
	KeyKeyUsage                = "kms:KeyUsage"
	KeyCustomerMasterKeySpec   = "kms:CustomerMasterKeySpec"
	KeyGrantOperations         = "kms:GrantOperations"
	KeyGrantConstraintType     = "kms:GrantConstraintType"
	KeyGrantIsForAWSResource   = "kms:GrantIsForAWSResource"
	KeyRequestAlias            = "kms:RequestAlias"
	KeyResourceAliases         = "kms:ResourceAliases"
	KeyMultiRegion             = "kms:MultiRegion"
	KeyMultiRegionKeyType      = "kms:MultiRegionKeyType" // PRIMARY or REPLICA
	KeyReplicaRegion           = "kms:ReplicaRegion"      // ReplicateKey
	KeyPrimaryRegion           = "kms:PrimaryRegion"      // UpdatePrimaryRegion
	KeyBypassLockoutCheck      = "kms:BypassPolicyLockoutSafetyCheck"

	KeyPrincipalArn       = "aws:PrincipalArn"
	KeyPrincipalAccount   = "aws:PrincipalAccount"
	KeyPrincipalType      = "aws:PrincipalType"
	KeyPrincipalTagPrefix = "aws:PrincipalTag/" // + tag key
	KeyResourceTagPrefix  = "aws:ResourceTag/"  // + tag key
	KeyRequestTagPrefix   = "aws:RequestTag/"   // + tag key
	KeyTagKeys            = "aws:TagKeys"
	KeySourceIP           = "aws:SourceIp"
	KeySecureTransport    = "aws:SecureTransport"
	KeyCurrentTime        = "aws:CurrentTime"
	KeyEpochTime          = "aws:EpochTime"
	KeyUsername           = "aws:username"
	KeyUserID             = "aws:userid"
	KeyPrincipalService   = "aws:PrincipalServiceName"
	KeyRequestedRegion    = "aws:RequestedRegion"
	KeyCalledVia          = "aws:CalledVia"
	KeyMultiFactorAuth    = "aws:MultiFactorAuthPresent"
)

// Context holds a request's condition keys and their values. A key with
// no values is absent. Build it with NewContext and the setters so keys are
// lower-cased; lookups still find keys of any case.
type Context map[string][]string

// NewContext returns an empty Context.
func NewContext() Context { return make(Context) }

// Set replaces key's values and returns c for chaining.
func (c Context) Set(key string, values ...string) Context {
	k := strings.ToLower(key)
	if len(values) == 0 {
		delete(c, k)
		return c
	}
	c[k] = append([]string(nil), values...)
	return c
}

// Add appends values to key.
func (c Context) Add(key string, values ...string) Context {
	k := strings.ToLower(key)
	c[k] = append(c[k], values...)
	return c
}

// Get returns key's values; the key is matched case-insensitively.
func (c Context) Get(key string) ([]string, bool) {
	return c.lookup(strings.ToLower(key))
}

// lookup finds lower-cased key, falling back to a case-insensitive scan
// for maps built by hand.
func (c Context) lookup(lower string) ([]string, bool) {
	if v, ok := c[lower]; ok {
		return v, len(v) > 0
	}
	for k, v := range c {
		if strings.EqualFold(k, lower) {
			return v, len(v) > 0
		}
	}
	return nil, false
}

// SetBool sets a Bool-typed key such as aws:SecureTransport.
func (c Context) SetBool(key string, v bool) Context {
	return c.Set(key, strconv.FormatBool(v))
}

// SetEncryptionContext sets kms:EncryptionContext:<k> for each pair and
// kms:EncryptionContextKeys. A nil or empty map sets nothing, so
// kms:EncryptionContextKeys is absent, as in AWS.
func (c Context) SetEncryptionContext(ec map[string]string) Context {
	keys := make([]string, 0, len(ec))
	for k, v := range ec {
		c.Set(KeyEncryptionContextPrefix+k, v)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return c.Set(KeyEncryptionContextKeys, keys...)
}

// SetPrincipal sets the keys that describe the caller: aws:PrincipalArn,
// aws:PrincipalAccount, aws:PrincipalType, kms:CallerAccount and, for IAM
// users, aws:username. Decide derives these from Request.Principal when
// the context lacks them, so calling this is optional.
func (c Context) SetPrincipal(p Principal) Context {
	if v := p.principalARN(); v != "" {
		c.Set(KeyPrincipalArn, v)
	}
	if p.AccountID != "" {
		c.Set(KeyPrincipalAccount, p.AccountID)
		c.Set(KeyCallerAccount, p.AccountID)
	}
	if v := p.awsPrincipalType(); v != "" {
		c.Set(KeyPrincipalType, v)
	}
	if v := p.userName(); v != "" {
		c.Set(KeyUsername, v)
	}
	if p.Type == Service {
		c.Set(KeyPrincipalService, p.ARN)
	}
	return c
}

// SetCurrentTime sets aws:CurrentTime (ISO 8601, UTC) and aws:EpochTime.
func (c Context) SetCurrentTime(t time.Time) Context {
	c.Set(KeyCurrentTime, t.UTC().Format(time.RFC3339))
	return c.Set(KeyEpochTime, strconv.FormatInt(t.Unix(), 10))
}

// SetPrincipalTags sets aws:PrincipalTag/<k> for each tag of the caller.
func (c Context) SetPrincipalTags(tags map[string]string) Context {
	for k, v := range tags {
		c.Set(KeyPrincipalTagPrefix+k, v)
	}
	return c
}

// SetResourceTags sets aws:ResourceTag/<k> for each tag of the key.
func (c Context) SetResourceTags(tags map[string]string) Context {
	for k, v := range tags {
		c.Set(KeyResourceTagPrefix+k, v)
	}
	return c
}

// SetRequestTags sets aws:RequestTag/<k> for each tag in the request and
// aws:TagKeys to their keys (TagResource, CreateKey with tags).
func (c Context) SetRequestTags(tags map[string]string) Context {
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		c.Set(KeyRequestTagPrefix+k, v)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return c.Set(KeyTagKeys, keys...)
}

// Request is what is being decided: who asks to do what to which resource,
// and the request's condition keys.
type Request struct {
	Principal Principal
	Action    string // e.g. "kms:Encrypt"
	Resource  string // the key ARN, or "*" (or "") for operations on no key
	Context   Context
}

// env resolves condition keys for one evaluation.
type env struct {
	req         *Request
	vars        bool // substitute policy variables
	anyResource bool // every Resource matches (LockoutSafe)
}

// get returns a key's values from the context or, for the keys that
// describe the principal, the one derived value in one (vals is then nil).
// Returning it as a string rather than a slice keeps evaluation free of
// allocations.
func (e *env) get(lower string) (vals []string, one string, ok bool) {
	if v, ok := e.req.Context.lookup(lower); ok {
		return v, "", true
	}
	one, ok = e.derive(lower)
	return nil, one, ok
}

// derive computes the keys that describe the principal.
func (e *env) derive(lower string) (string, bool) {
	p := &e.req.Principal
	var v string
	switch lower {
	case "aws:principalarn":
		v = p.principalARN()
	case "aws:principalaccount", "kms:calleraccount":
		v = p.AccountID
	case "aws:principaltype":
		v = p.awsPrincipalType()
	case "aws:username":
		v = p.userName()
	case "aws:principalservicename":
		if p.Type == Service {
			v = p.ARN
		}
	}
	return v, v != ""
}

// single returns a single-valued key's value, for policy variables.
func (e *env) single(lower string) (string, bool) {
	if v, ok := e.req.Context.lookup(lower); ok {
		if len(v) != 1 {
			return "", false
		}
		return v[0], true
	}
	return e.derive(lower)
}
