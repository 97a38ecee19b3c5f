package kms

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/keyhold/keyhold/internal/lru"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/store"
)

// AccessDenied is KMS's AccessDeniedException.
const AccessDenied Code = "AccessDeniedException"

// IdentityPolicies returns the identity policy documents of a caller (a
// session gets its role's). Errors are internal.
type IdentityPolicies func(ctx context.Context, c Request) ([]string, error)

// PrincipalTags returns the tags of a caller's user or role.
type PrincipalTags func(ctx context.Context, c Request) (map[string]string, error)

// authz holds the policy side of the domain.
type authz struct {
	identity IdentityPolicies
	tags     PrincipalTags
	// skip is set only by this package's unit tests (kms_test.go), which
	// exercise the rules of the seeds without policies; nothing outside
	// the package can set it.
	skip bool
	docs *lru.Cache[string, parsedPolicy] // policy text -> parsed (key and identity)
}

// parsedPolicy is a parsed document and whether deciding it needs the
// request's condition keys (conditions, or policy variables in resources).
type parsedPolicy struct {
	doc         *policy.Document
	conditional bool
}

func conditional(d *policy.Document) bool {
	for _, st := range d.Statements {
		if len(st.Conditions) > 0 {
			return true
		}
		for _, r := range append(append([]string(nil), st.Resource...), st.NotResource...) {
			if strings.Contains(r, "${") {
				return true
			}
		}
	}
	return false
}

func (a *authz) parse(text string, kind policy.Kind) (parsedPolicy, error) {
	p, ok := a.docs.Get(text)
	if ok {
		return p, nil
	}
	d, err := policy.Parse(text, kind)
	if err != nil {
		return parsedPolicy{}, err
	}
	p = parsedPolicy{doc: d, conditional: conditional(d)}
	a.docs.Put(text, p)
	return p, nil
}

func (s *Service) principal(c Request) policy.Principal {
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
func (s *Service) requestContext(c Request, p policy.Principal) policy.Context {
	pc := policy.NewContext().SetPrincipal(p).SetCurrentTime(s.now())
	pc.SetBool(policy.KeySecureTransport, c.SecureTransport)
	if c.SourceIP != "" {
		pc.Set(policy.KeySourceIP, c.SourceIP)
	}
	pc.Set(policy.KeyRequestedRegion, s.regionOf(c))
	return pc
}

// authorize decides the current operation (the action in ctx) for caller c
// on key k (nil for operations on no key). extra adds operation-specific
// condition keys (encryption context, request tags, ...).
func (s *Service) authorize(ctx context.Context, c Request, k *store.Key, extra func(policy.Context)) error {
	return s.authorizeAction(ctx, c.Action, c, k, extra)
}

func (s *Service) authorizeAction(ctx context.Context, action string, c Request, k *store.Key, extra func(policy.Context)) error {
	if err := s.checkGrantTokens(c); err != nil {
		return err
	}
	if s.authz.skip {
		return nil
	}
	if action == "" {
		return internal("authorize", errNoAction)
	}
	p := s.principal(c)
	in := policy.Input{Request: policy.Request{Principal: p, Action: action, Resource: "*"}, KeyAccount: c.AccountID}
	resource := "*"
	needContext := false
	if k != nil {
		resource = keyARN(*k)
		in.Request.Resource, in.KeyAccount = resource, k.AccountID
		kp, err := s.authz.parse(k.Policy, policy.KeyPolicy)
		if err != nil {
			return internal("authorize: stored key policy", err)
		}
		in.KeyPolicy, needContext = kp.doc, kp.conditional
	}
	docs, conditional, err := s.identityDocs(ctx, c)
	if err != nil {
		return err
	}
	in.IdentityPolicies = docs
	needContext = needContext || conditional
	// Building the condition keys costs more than deciding; policies
	// without conditions (the default key policy, most identity policies)
	// are decided on the principal alone. Grants always see the context.
	var pc policy.Context
	buildContext := func() policy.Context {
		if pc != nil {
			return pc
		}
		pc = s.requestContext(c, p)
		if s.authz.tags != nil {
			if tags, err := s.authz.tags(ctx, c); err == nil && len(tags) > 0 {
				pc.SetPrincipalTags(tags)
			}
		}
		if k != nil {
			pc.Set(policy.KeyKeyOrigin, k.Origin)
			pc.Set(policy.KeyKeySpec, k.KeySpec)
			pc.Set(policy.KeyCustomerMasterKeySpec, k.KeySpec)
			pc.Set(policy.KeyKeyUsage, k.KeyUsage)
			pc.Set("kms:CustomerMasterKeyUsage", k.KeyUsage)
			pc.SetBool(policy.KeyMultiRegion, k.MultiRegion != nil)
			if k.MultiRegion != nil {
				pc.Set(policy.KeyMultiRegionKeyType, multiRegionKeyType(*k))
			}
			if len(k.Tags) > 0 {
				tags := make(map[string]string, len(k.Tags))
				for _, t := range k.Tags {
					tags[t.Key] = t.Value
				}
				pc.SetResourceTags(tags)
			}
			// kms:ResourceAliases: only read when a policy has conditions.
			if as, err := s.st.ListAliases(ctx, k.AccountID, k.Region, k.ID, "", 50); err == nil && len(as) > 0 {
				names := make([]string, len(as))
				for i, a := range as {
					names[i] = a.Name
				}
				pc.Set(policy.KeyResourceAliases, names...)
			}
		}
		if extra != nil {
			extra(pc)
		}
		return pc
	}
	if needContext {
		in.Request.Context = buildContext()
	}
	res := policy.Decide(in)
	if !res.Allowed && k != nil && s.grantAllows(ctx, c, action, k, buildContext()) {
		in.GrantAllows = true
		in.Request.Context = buildContext()
		res = policy.Decide(in)
	}
	if !res.Allowed {
		return errorf(AccessDenied, "%s", res.Message(action, c.ARN, resource))
	}
	return nil
}

// AuthorizeIdentityOnly decides an operation on no KMS key, outside the
// KMS table (the CloudHSM control plane, IAM), by the caller's identity
// policies, with the same parsed-policy cache as KMS operations. c.Action
// is the operation's policy action.
func (s *Service) AuthorizeIdentityOnly(ctx context.Context, c Request) error {
	return s.authorizeAction(ctx, c.Action, c, nil, nil)
}

// identityDocs returns the caller's parsed identity policies and whether
// any of them needs the request's condition keys.
func (s *Service) identityDocs(ctx context.Context, c Request) ([]*policy.Document, bool, error) {
	texts, err := s.authz.identity(ctx, c)
	if err != nil {
		return nil, false, internal("authorize: identity policies", err)
	}
	var docs []*policy.Document
	conditional := false
	for _, t := range texts {
		d, err := s.authz.parse(t, policy.IdentityPolicy)
		if err != nil {
			s.log.Warn("ignoring an identity policy that does not parse", "principal", c.ARN, "err", err)
			continue
		}
		docs = append(docs, d.doc)
		conditional = conditional || d.conditional
	}
	return docs, conditional, nil
}

// grantAllows reports whether a grant on k gives c the action (grants.go).
// A key without grants costs one cache lookup.
func (s *Service) grantAllows(ctx context.Context, c Request, action string, k *store.Key, pc policy.Context) bool {
	gs, err := s.keyGrants(ctx, k.AccountID, k.Region, k.ID)
	if err != nil {
		s.log.Error("reading grants; none apply", "key", keyARN(*k), "err", err)
		return false
	}
	return len(gs) > 0 && s.grantAllowsAction(ctx, gs, c, action, pc)
}

func encryptionContext(ec map[string]string) func(policy.Context) {
	return func(pc policy.Context) { pc.SetEncryptionContext(ec) }
}

// AssumeRoleAllowed decides sts:AssumeRole for caller on roleARN, whose
// trust policy is trust: the trust policy is the resource policy (naming
// the caller allows it; naming the caller's account delegates to the
// caller's identity policies), decided by the same evaluator and identity
// policies as every KMS call. It fails closed: a trust policy that does not
// parse, or identity policies that cannot be read, deny.
func (s *Service) AssumeRoleAllowed(ctx context.Context, trust, roleARN string, caller principal.Principal) bool {
	doc, err := ParseTrustPolicy(trust)
	if err != nil {
		return false
	}
	c := Request{Principal: caller, Action: "sts:AssumeRole", Operation: "AssumeRole"}
	docs, _, err := s.identityDocs(ctx, c)
	if err != nil {
		s.log.Error("AssumeRole: identity policies", "principal", caller.ARN, "err", err)
		return false
	}
	p := s.principal(c)
	roleAccount := ""
	if parts := strings.Split(roleARN, ":"); len(parts) > 4 {
		roleAccount = parts[4]
	}
	in := policy.Input{KeyPolicy: doc, KeyAccount: roleAccount, IdentityPolicies: docs,
		Request: policy.Request{Principal: p, Action: "sts:AssumeRole", Resource: roleARN, Context: policy.NewContext().SetPrincipal(p)}}
	return policy.Decide(in).Allowed
}

// ParseTrustPolicy parses a role trust policy: a resource policy whose
// statements name principals and, unlike key policies, usually no Resource
// (the role itself is the resource).
func ParseTrustPolicy(text string) (*policy.Document, error) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return policy.Parse(text, policy.KeyPolicy) // reports the JSON error
	}
	fill := func(st any) {
		if m, ok := st.(map[string]any); ok {
			_, r := m["Resource"]
			_, nr := m["NotResource"]
			if !r && !nr {
				m["Resource"] = "*"
			}
		}
	}
	switch st := doc["Statement"].(type) {
	case []any:
		for _, x := range st {
			fill(x)
		}
	default:
		fill(st)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return policy.Parse(string(b), policy.KeyPolicy)
}
