// Package kms is keyhold's domain: KMS keys, their states, aliases, tags,
// key policies, cryptographic operations and custom key stores, with the
// rules AWS KMS documents. It decides; internal/api/kmsapi translates the
// wire protocol to these calls and back.
//
// Key stores are drivers behind internal/keystore's interfaces, picked by
// store type; the domain keeps the connection state machine and the rules
// of the seeds that are not a driver's (names, quotas, key states,
// authorization). Every method takes one explicit Request; nothing about a
// request travels in context values.
//
// It never imports net/http, wire structs or a key store driver, never
// returns key material it does not mean to return (data keys), and never
// puts a secret in an error.
package kms

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/lru"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/store"
)

// Request is one domain call's explicit facts: who calls (the one
// principal type), which operation and policy action it is, its grant
// tokens and request id, and the transport facts conditions may test.
// Every domain method takes it; nothing about a request travels in
// context values.
type Request struct {
	principal.Principal
	// Region is the AWS Region the request is for (its SigV4 credential
	// scope): keys, aliases, grants and custom key stores are seen only
	// in their own Region. "" means the service's default Region.
	Region          string
	RequestID       string
	SourceIP        string
	SecureTransport bool
	// Operation is the KMS operation (Encrypt, GenerateDataKey, ...): XKS
	// proxies receive it as requestMetadata.kmsOperation.
	Operation string
	// Action is the policy action the operation table registered
	// (kms:Encrypt); authorization decides it and nothing else.
	Action string
	// GrantTokens are the request's GrantTokens.
	GrantTokens []string

	// grant is CreateGrant's own request, for the grant-constraint
	// condition keys (grants.go).
	grant *grantRequest
}

// NewRequest builds a Request for p with the policy action of operation op (as
// the operation table declares it).
func NewRequest(p principal.Principal, op string) Request {
	acts := Actions(op)
	return Request{Principal: p, Operation: op, Action: acts[0]}
}

var errNoAction = errors.New("operation has no policy action")

// Config builds a Service.
type Config struct {
	Region string
	Store  store.Store
	Root   *rootkey.Key
	Now    func() time.Time // nil = time.Now
	Logger *slog.Logger
	// Default is the default key store's driver (keyhold-held material);
	// required.
	Default keystore.Default
	// Drivers are the custom key store drivers, one per type; a type
	// without one answers UnsupportedOperationException.
	Drivers []keystore.Driver
	// IdentityPolicies is where the caller's identity policies come from.
	// It is required: a Service without a policy source refuses to start
	// (New fails), so a composition root that forgets it cannot serve
	// every call as allowed.
	IdentityPolicies IdentityPolicies
	// PrincipalTags lets conditions see aws:PrincipalTag/* (optional).
	PrincipalTags PrincipalTags
	// Caches bounds the in-memory caches (zero fields take the defaults).
	Caches CacheSizes
}

// CacheSizes bound the domain's caches, in entries. Each is least recently
// used first out; what is not cached is read from the store.
type CacheSizes struct {
	Keys     int // key records (a few KB each): default 10,000
	Aliases  int // alias name -> key id: default 10,000
	Grants   int // one key's grant list: default 10,000
	Policies int // parsed key and identity policies: default 10,000
}

// DefaultCacheSize is the default of every CacheSizes field.
const DefaultCacheSize = 10000

func (c CacheSizes) withDefaults() CacheSizes {
	for _, f := range []*int{&c.Keys, &c.Aliases, &c.Grants, &c.Policies} {
		if *f <= 0 {
			*f = DefaultCacheSize
		}
	}
	return c
}

// ErrNoPolicySource is New's error when Config.IdentityPolicies is nil.
var ErrNoPolicySource = errors.New("kms.New: no identity policy source (Config.IdentityPolicies); refusing to run with authorization off")

// ErrNoDefaultStore is New's error when Config.Default is nil.
var ErrNoDefaultStore = errors.New("kms.New: no default key store driver (Config.Default)")

// Service is the KMS domain. Safe for concurrent use.
type Service struct {
	region   string
	st       store.Store
	root     *rootkey.Key
	now      func() time.Time
	log      *slog.Logger
	soft     keystore.Default
	backends map[blob.Kind]keystore.Backend

	mu      sync.RWMutex
	keys    *lru.Cache[string, store.Key] // account/id -> key, a write-through cache
	aliases *lru.Cache[string, string]    // account/alias name -> key id
	grants  grantCache                    // account/id -> the key's grants (grants.go)
	// regions are the Regions this service has served or stored keys in,
	// so that an invalidation naming a key id (no Region) drops it from
	// every Region's cache entries.
	regions sync.Map // string -> struct{}
	// epoch bumps (under mu) on every invalidation from another replica; a
	// cache fill that read the store in an older epoch is not installed
	// (replicas.go).
	epoch atomic.Uint64

	cks   *customKeyStores
	authz authz
	usage usageTracker

	// bg outlives requests (asynchronous connects); Close cancels it.
	bg     context.Context
	stopBG context.CancelFunc
}

// New builds a Service. It fails without a policy source.
func New(cfg Config) (*Service, error) {
	if cfg.IdentityPolicies == nil {
		return nil, ErrNoPolicySource
	}
	if cfg.Default == nil {
		return nil, ErrNoDefaultStore
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Service{region: cfg.Region, st: cfg.Store, root: cfg.Root, now: now, log: log,
		soft: cfg.Default}
	caches := cfg.Caches.withDefaults()
	s.keys, s.aliases = lru.New[string, store.Key](caches.Keys), lru.New[string, string](caches.Aliases)
	s.grants.byKey = lru.New[grantKey, []store.Grant](caches.Grants)
	s.backends = map[blob.Kind]keystore.Backend{cfg.Default.Kind(): cfg.Default}
	for _, d := range cfg.Drivers {
		s.backends[d.Kind()] = d
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.authz.docs = lru.New[string, parsedPolicy](caches.Policies)
	s.authz.identity, s.authz.tags = cfg.IdentityPolicies, cfg.PrincipalTags
	s.cks = newCustomKeyStores(s, cfg.Drivers)
	return s, nil
}

// Region is the service's default Region: the Region of requests that
// name none, and of everything stored before keyhold knew Regions.
func (s *Service) Region() string { return s.region }

// regionOf is the Region request c is for.
func (s *Service) regionOf(c Request) string {
	if c.Region != "" {
		return c.Region
	}
	return s.region
}

// seenRegion remembers a Region keys may be cached in.
func (s *Service) seenRegion(region string) {
	if _, ok := s.regions.Load(region); !ok {
		s.regions.Store(region, struct{}{})
	}
}

// keyARN is a key's ARN: its Region, account and id.
func keyARN(k store.Key) string { return keyARNIn(k.Region, k.AccountID, k.ID) }

func keyARNIn(region, account, id string) string {
	return "arn:aws:kms:" + region + ":" + account + ":key/" + id
}

func grantKeyARN(g store.Grant) string { return keyARNIn(g.Region, g.AccountID, g.KeyID) }

func aliasARNIn(region, account, name string) string {
	return "arn:aws:kms:" + region + ":" + account + ":" + name
}

// aliasARN is the ARN of alias name in the caller's account and Region.
func (s *Service) aliasARN(c Request, name string) string {
	return aliasARNIn(s.regionOf(c), c.AccountID, name)
}

func cacheKey(account, region, id string) string { return account + "/" + region + "/" + id }

// getKey reads a key through the cache.
func (s *Service) getKey(ctx context.Context, account, region, id string) (store.Key, error) {
	ck := cacheKey(account, region, id)
	if k, ok := s.keys.Get(ck); ok {
		return k, nil
	}
	s.seenRegion(region)
	e := s.epoch.Load()
	k, err := s.st.GetKey(ctx, account, region, id)
	if err != nil {
		return k, err
	}
	s.mu.Lock()
	if s.epoch.Load() == e {
		s.keys.Put(ck, k)
	}
	s.mu.Unlock()
	return k, nil
}

func (s *Service) cacheKeyPut(k store.Key) {
	s.seenRegion(k.Region)
	s.keys.Put(cacheKey(k.AccountID, k.Region, k.ID), k)
}

func (s *Service) cacheKeyDrop(account, region, id string) {
	s.keys.Delete(cacheKey(account, region, id))
	s.aliases.DeleteFunc(func(a, kid string) bool { return kid == id && strings.HasPrefix(a, account+"/"+region+"/") })
}

// cacheKeyDropAll drops key id of account in every Region (an
// invalidation from another replica names no Region).
func (s *Service) cacheKeyDropAll(account, id string) {
	s.regions.Range(func(r, _ any) bool {
		s.keys.Delete(cacheKey(account, r.(string), id))
		return true
	})
	s.aliases.DeleteFunc(func(a, kid string) bool { return kid == id && strings.HasPrefix(a, account+"/") })
}

// updateKey writes k (read at k.Version) and refreshes the cache. A
// concurrent writer makes it fail with ErrConflict; callers retry via
// mutateKey.
func (s *Service) updateKey(ctx context.Context, k store.Key) (store.Key, error) {
	v, err := s.st.UpdateKey(ctx, k)
	if err != nil {
		s.cacheKeyDrop(k.AccountID, k.Region, k.ID)
		return k, err
	}
	k.Version = v
	s.cacheKeyPut(k)
	return k, nil
}

// mutateKey applies fn to the current key and writes it, retrying on a
// concurrent update. fn validates and returns a domain error to abort.
func (s *Service) mutateKey(ctx context.Context, account, region, id string, fn func(k *store.Key) error) (store.Key, error) {
	for attempt := 0; attempt < 32; attempt++ {
		k, err := s.getKey(ctx, account, region, id)
		if err != nil {
			return k, s.storeErr("getKey", err, id)
		}
		if err := fn(&k); err != nil {
			return k, err
		}
		if isPrimaryWithReplicas(k) {
			// The replicas share what a primary's change may touch
			// (rotation, material): they change in the same transaction.
			k, err = s.writeMultiRegion(ctx, k)
		} else {
			k, err = s.updateKey(ctx, k)
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, errStaleRead) {
			continue
		}
		if err != nil {
			return k, s.storeErr("updateKey", err, id)
		}
		return k, nil
	}
	return store.Key{}, internal("mutateKey", errors.New("too many concurrent updates"))
}

func (s *Service) storeErr(op string, err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Key '%s' does not exist", id)
	}
	if _, ok := AsError(err); ok {
		return err
	}
	return internal(op, err)
}

// resolveOpts says which key identifier forms an operation accepts.
type resolveOpts struct {
	allowAlias bool
	// crossAccount lets a key ARN (or alias ARN) name another account's key,
	// as AWS allows for cryptographic operations and DescribeKey.
	crossAccount bool
	// ctx adds operation-specific condition keys to the authorization.
	ctx func(policy.Context)
	// noAuth skips authorization (the caller authorizes itself).
	noAuth bool
}

// resolveKey turns any accepted identifier into a key and authorizes the
// current operation on it. Key ids, key ARNs and (where allowed) alias names
// and alias ARNs are accepted; another account's key only by ARN and only
// where AWS allows cross-account use.
func (s *Service) resolveKey(ctx context.Context, c Request, keyID string, o resolveOpts) (store.Key, error) {
	k, alias, err := s.findKey(ctx, c, keyID, o)
	if err != nil {
		return k, err
	}
	if o.noAuth {
		return k, nil
	}
	extra := o.ctx
	if alias != "" {
		extra = func(pc policy.Context) {
			pc.Set(policy.KeyRequestAlias, alias)
			if o.ctx != nil {
				o.ctx(pc)
			}
		}
	}
	if err := s.authorize(ctx, c, &k, extra); err != nil {
		return store.Key{}, err
	}
	return k, nil
}

func (s *Service) findKey(ctx context.Context, c Request, keyID string, o resolveOpts) (store.Key, string, error) {
	account, region := c.AccountID, s.regionOf(c)
	id := keyID
	if strings.HasPrefix(keyID, "arn:") {
		a, ok := parseARN(keyID)
		if !ok {
			return store.Key{}, "", errorf(InvalidArn, "Invalid arn %s", keyID)
		}
		// A key (or alias) ARN of another Region names nothing here, as in
		// AWS: each Region's endpoint knows only its own keys.
		if a.region != region || a.resource == "" || (a.account != c.AccountID && !o.crossAccount) {
			return store.Key{}, "", errorf(NotFound, "Key '%s' does not exist", keyID)
		}
		account = a.account
		switch {
		case strings.HasPrefix(a.resource, "key/"):
			id = strings.TrimPrefix(a.resource, "key/")
		case strings.HasPrefix(a.resource, "alias/"):
			if !o.allowAlias {
				return store.Key{}, "", errorf(NotFound, "Invalid keyId %s", keyID)
			}
			k, err := s.resolveAlias(ctx, account, region, a.resource, keyID)
			return k, a.resource, err
		default:
			return store.Key{}, "", errorf(InvalidArn, "Invalid arn %s", keyID)
		}
	} else if strings.HasPrefix(keyID, "alias/") {
		if !o.allowAlias {
			return store.Key{}, "", errorf(NotFound, "Invalid keyId %s", keyID)
		}
		k, err := s.resolveAlias(ctx, account, region, keyID, keyID)
		return k, keyID, err
	}
	if _, _, ok := blob.ParseKeyID(id); !ok {
		return store.Key{}, "", errorf(NotFound, "Invalid keyId %s", keyID)
	}
	k, err := s.getKey(ctx, account, region, strings.ToLower(id))
	if err != nil {
		return k, "", s.storeErr("resolveKey", err, keyARNIn(region, account, id))
	}
	return k, "", nil
}

func (s *Service) resolveAlias(ctx context.Context, account, region, name, asGiven string) (store.Key, error) {
	if account != "" {
		ak := account + "/" + region + "/" + name
		id, ok := s.aliases.Get(ak)
		if !ok {
			e := s.epoch.Load()
			a, err := s.st.GetAlias(ctx, account, region, name)
			if errors.Is(err, store.ErrNotFound) {
				if k, ok, err := s.awsManagedKey(ctx, account, region, name); ok {
					return k, err
				}
				return store.Key{}, errorf(NotFound, "Alias %s is not found.", aliasARNIn(region, account, name))
			}
			if err != nil {
				return store.Key{}, internal("resolveAlias", err)
			}
			id = a.KeyID
			s.mu.Lock()
			if s.epoch.Load() == e {
				s.aliases.Put(ak, id)
			}
			s.mu.Unlock()
		}
		k, err := s.getKey(ctx, account, region, id)
		if err != nil {
			return k, s.storeErr("resolveAlias", err, asGiven)
		}
		return k, nil
	}
	return store.Key{}, errorf(NotFound, "Alias %s is not found.", asGiven)
}

type arn struct {
	partition, service, region, account, resource string
}

// parseARN splits arn:partition:service:region:account:resource.
func parseARN(s string) (arn, bool) {
	p := strings.SplitN(s, ":", 6)
	if len(p) != 6 || p[0] != "arn" || p[1] == "" || p[2] == "" {
		return arn{}, false
	}
	a := arn{partition: p[1], service: p[2], region: p[3], account: p[4], resource: p[5]}
	if a.service != "kms" || len(a.account) != 12 || strings.Trim(a.account, "0123456789") != "" {
		return arn{}, false
	}
	return a, true
}

func (s *Service) unmarshalConfig(b []byte, v any) {
	if err := json.Unmarshal(b, v); err != nil {
		s.log.Error("custom key store config", "err", err)
	}
}

// Close writes the key uses not yet written, stops background work
// (connects in progress) and waits for it.
func (s *Service) Close() {
	if err := s.FlushKeyUsage(context.Background()); err != nil {
		s.log.Error("recording key usage", "err", err)
	}
	s.stopBG()
	s.cks.wg.Wait()
}
