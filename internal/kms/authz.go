package kms

import (
	"context"
	"sync"

	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/store"
)

// AccessDenied is KMS's AccessDeniedException.
const AccessDenied Code = "AccessDeniedException"

// IdentityPolicies returns the identity policy documents of a caller (a
// session gets its role's). Errors are internal.
type IdentityPolicies func(ctx context.Context, c Caller) ([]string, error)

type actionKey struct{}

// WithAction names the policy action of the operation being served; the
// operation table sets it, so the action checked is the one registered.
func WithAction(ctx context.Context, action string) context.Context {
	return context.WithValue(ctx, actionKey{}, action)
}

func actionFrom(ctx context.Context) string {
	a, _ := ctx.Value(actionKey{}).(string)
	return a
}

// authz holds the policy side of the domain.
type authz struct {
	identity IdentityPolicies
	mu       sync.RWMutex
	docs     map[string]*policy.Document // policy text -> parsed (key and identity)
}

// SetIdentityPolicies turns on authorization: from then on every operation
// is decided by key policies, identity policies and grants.
func (s *Service) SetIdentityPolicies(f IdentityPolicies) { s.authz.identity = f }

const maxCachedPolicies = 10000

func (a *authz) parse(text string, kind policy.Kind) (*policy.Document, error) {
	a.mu.RLock()
	d := a.docs[text]
	a.mu.RUnlock()
	if d != nil {
		return d, nil
	}
	d, err := policy.Parse(text, kind)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.docs) >= maxCachedPolicies {
		a.docs = make(map[string]*policy.Document)
	}
	a.docs[text] = d
	a.mu.Unlock()
	return d, nil
}

func (s *Service) principal(c Caller) policy.Principal {
	p, err := policy.ParsePrincipal(c.ARN)
	if err != nil {
		return policy.Principal{ARN: c.ARN, AccountID: c.AccountID}
	}
	if c.RoleARN != "" {
		p.RoleARN = c.RoleARN
	}
	return p
}

// requestContext fills the condition keys every request has.
func (s *Service) requestContext(c Caller, p policy.Principal) policy.Context {
	pc := policy.NewContext().SetPrincipal(p).SetCurrentTime(s.now())
	pc.SetBool(policy.KeySecureTransport, c.SecureTransport)
	if c.SourceIP != "" {
		pc.Set(policy.KeySourceIP, c.SourceIP)
	}
	pc.Set(policy.KeyRequestedRegion, s.region)
	return pc
}

// authorize decides the current operation (the action in ctx) for caller c
// on key k (nil for operations on no key). extra adds operation-specific
// condition keys (encryption context, request tags, ...).
func (s *Service) authorize(ctx context.Context, c Caller, k *store.Key, extra func(policy.Context)) error {
	return s.authorizeAction(ctx, actionFrom(ctx), c, k, extra)
}

func (s *Service) authorizeAction(ctx context.Context, action string, c Caller, k *store.Key, extra func(policy.Context)) error {
	if s.authz.identity == nil {
		return nil // authorization is off (domain unit tests)
	}
	if action == "" {
		return internal("authorize", errNoAction)
	}
	p := s.principal(c)
	pc := s.requestContext(c, p)
	in := policy.Input{Request: policy.Request{Principal: p, Action: action, Resource: "*", Context: pc}, KeyAccount: c.AccountID}
	resource := "*"
	if k != nil {
		resource = s.keyARN(k.AccountID, k.ID)
		in.Request.Resource, in.KeyAccount = resource, k.AccountID
		pc.Set(policy.KeyKeyOrigin, k.Origin)
		pc.Set(policy.KeyKeySpec, k.KeySpec)
		pc.Set(policy.KeyCustomerMasterKeySpec, k.KeySpec)
		pc.Set(policy.KeyKeyUsage, k.KeyUsage)
		pc.Set("kms:CustomerMasterKeyUsage", k.KeyUsage)
		pc.SetBool(policy.KeyMultiRegion, false)
		if len(k.Tags) > 0 {
			tags := make(map[string]string, len(k.Tags))
			for _, t := range k.Tags {
				tags[t.Key] = t.Value
			}
			pc.SetResourceTags(tags)
		}
		kp, err := s.authz.parse(k.Policy, policy.KeyPolicy)
		if err != nil {
			return internal("authorize: stored key policy", err)
		}
		in.KeyPolicy = kp
	}
	if extra != nil {
		extra(pc)
	}
	texts, err := s.authz.identity(ctx, c)
	if err != nil {
		return internal("authorize: identity policies", err)
	}
	for _, t := range texts {
		d, err := s.authz.parse(t, policy.IdentityPolicy)
		if err != nil {
			s.log.Warn("ignoring an identity policy that does not parse", "principal", c.ARN, "err", err)
			continue
		}
		in.IdentityPolicies = append(in.IdentityPolicies, d)
	}
	if k != nil {
		in.GrantAllows = s.grantAllows(ctx, c, action, k, pc)
	}
	res := policy.Decide(in)
	if !res.Allowed {
		return errorf(AccessDenied, "%s", res.Message(action, c.ARN, resource))
	}
	return nil
}

// grantAllows reports whether a grant on k gives c the action (grants are
// not implemented yet: none exist).
func (s *Service) grantAllows(ctx context.Context, c Caller, action string, k *store.Key, pc policy.Context) bool {
	return false
}

func encryptionContext(ec map[string]string) func(policy.Context) {
	return func(pc policy.Context) { pc.SetEncryptionContext(ec) }
}
