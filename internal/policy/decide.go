package policy

import "fmt"

// Input is everything Decide weighs.
type Input struct {
	// KeyPolicy is the key's policy; nil for operations on no key
	// (CreateKey, ListKeys, ListAliases, GenerateRandom, custom key store
	// and cluster operations), which identity policies alone decide.
	KeyPolicy *Document
	// IdentityPolicies are the caller's own policies (attached to the user
	// or role). A root caller has none and needs none.
	IdentityPolicies []*Document
	// GrantAllows is whether a grant on the key gives the caller this
	// operation (the caller checks grantee, operations and constraints).
	GrantAllows bool
	// KeyAccount is the account that owns the key (or, for operations on no
	// key, the resource). Empty means the account in Request.Resource's ARN,
	// or the caller's own account if that has none.
	KeyAccount string
	Request    Request
}

// Reason says why Decide decided as it did.
type Reason int

// Reasons. The Allowed... ones go with Allowed=true.
const (
	_ Reason = iota
	// AllowedByKeyPolicy: the key policy names the caller (or "*").
	AllowedByKeyPolicy
	// AllowedByIdentityPolicy: the key policy delegates to the account and
	// an identity policy allows; or, for an operation on no key, an
	// identity policy allows.
	AllowedByIdentityPolicy
	// AllowedCrossAccount: the key policy allows the caller or its account,
	// and the caller's identity policy allows too.
	AllowedCrossAccount
	// AllowedByGrant: a grant allows the operation.
	AllowedByGrant
	// AllowedAsRoot: the account root, on an operation on no key in its own
	// account; identity policies cannot restrict it.
	AllowedAsRoot
	// ExplicitDenyKeyPolicy: a Deny statement of the key policy applies.
	ExplicitDenyKeyPolicy
	// ExplicitDenyIdentityPolicy: a Deny statement of an identity policy applies.
	ExplicitDenyIdentityPolicy
	// NoIdentityPolicyAllows: the key policy delegates to identity policies
	// (or there is no key), and none allows.
	NoIdentityPolicyAllows
	// KeyPolicyDoesNotAllow: the key policy neither allows the caller nor
	// its account, and no grant allows.
	KeyPolicyDoesNotAllow
	// CrossAccountNotAllowed: an operation on no key, asked for in another
	// account; such operations never work across accounts.
	CrossAccountNotAllowed
)

var reasonNames = [...]string{"", "AllowedByKeyPolicy", "AllowedByIdentityPolicy", "AllowedCrossAccount", "AllowedByGrant",
	"AllowedAsRoot", "ExplicitDenyKeyPolicy", "ExplicitDenyIdentityPolicy", "NoIdentityPolicyAllows",
	"KeyPolicyDoesNotAllow", "CrossAccountNotAllowed"}

func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	for i, n := range reasonNames {
		if i > 0 && n == s {
			return Reason(i), true
		}
	}
	return 0, false
}

// Result is Decide's answer.
type Result struct {
	Allowed bool
	Reason  Reason
	// Sid and Statement name the deciding statement when there is one (a
	// Deny, or the Allow that allowed); Policy is "key" or "identity".
	Sid       string
	Statement int
	Policy    string
}

// Message renders AWS's AccessDeniedException wording for a denial, such
// as "User: arn:aws:iam::111122223333:user/bob is not authorized to
// perform: kms:Encrypt on resource: arn:aws:kms:...:key/... because no
// identity-based policy allows the kms:Encrypt action". It is "" for an
// allowed result. resourceARN may be empty for operations on no resource.
func (r Result) Message(action, principalARN, resourceARN string) string {
	if r.Allowed {
		return ""
	}
	msg := "User: " + principalARN + " is not authorized to perform: " + action
	if resourceARN != "" {
		msg += " on resource: " + resourceARN
	}
	switch r.Reason {
	case ExplicitDenyKeyPolicy:
		return msg + " with an explicit deny in a key policy"
	case ExplicitDenyIdentityPolicy:
		return msg + " with an explicit deny in an identity-based policy"
	case KeyPolicyDoesNotAllow:
		return msg + " because no resource-based policy allows the " + action + " action"
	case CrossAccountNotAllowed:
		return msg + " because " + action + " cannot be used across accounts"
	default:
		return msg + " because no identity-based policy allows the " + action + " action"
	}
}

// Decide applies AWS KMS's evaluation: an explicit Deny in any policy
// wins; otherwise, on a key, the caller is allowed when the key policy
// names it, or names its account and an identity policy allows, or a grant
// allows. From another account, the key policy must allow the caller or
// its account and the caller's identity policy must allow as well (a grant
// suffices alone). Operations on no key follow identity policies only and
// never cross accounts.
func Decide(in Input) Result {
	req := &in.Request
	p := &req.Principal
	e := env{req: req}

	var kp Evaluation
	if in.KeyPolicy != nil {
		kp = in.KeyPolicy.evaluate(&e)
		if kp.Deny.Found() {
			return Result{Reason: ExplicitDenyKeyPolicy, Sid: kp.Deny.Sid, Statement: kp.Deny.Statement, Policy: "key"}
		}
	}

	// Identity side: the caller's own policies.
	var idAllow Match
	for _, d := range in.IdentityPolicies {
		if d == nil {
			continue
		}
		ev := d.evaluate(&e)
		if ev.Deny.Found() {
			return Result{Reason: ExplicitDenyIdentityPolicy, Sid: ev.Deny.Sid, Statement: ev.Deny.Statement, Policy: "identity"}
		}
		if !idAllow.Found() {
			if ev.Allow.Found() {
				idAllow = ev.Allow
			} else if ev.AccountAllow.Found() {
				idAllow = ev.AccountAllow
			}
		}
	}
	hasIdentity := p.AccountID != "" && p.Type != Service && p.Type != Anonymous
	idAllowed := hasIdentity && (idAllow.Found() || p.Type == Root)

	account := in.KeyAccount
	if account == "" {
		if a, ok := splitARN(req.Resource); ok {
			account = a.account
		}
	}
	sameAccount := account == "" || account == p.AccountID

	if in.KeyPolicy == nil {
		switch {
		case !sameAccount:
			return Result{Reason: CrossAccountNotAllowed}
		case p.Type == Root && hasIdentity:
			return Result{Allowed: true, Reason: AllowedAsRoot}
		case idAllowed:
			return Result{Allowed: true, Reason: AllowedByIdentityPolicy, Sid: idAllow.Sid, Statement: idAllow.Statement, Policy: "identity"}
		}
		return Result{Reason: NoIdentityPolicyAllows}
	}

	keyResult := func(r Reason, m Match) Result {
		return Result{Allowed: true, Reason: r, Sid: m.Sid, Statement: m.Statement, Policy: "key"}
	}
	switch {
	case !hasIdentity:
		// Services and anonymous callers have no identity policies: only
		// the key policy naming them, or a grant, lets them in.
		if kp.Allow.Found() {
			return keyResult(AllowedByKeyPolicy, kp.Allow)
		}
	case sameAccount:
		if kp.Allow.Found() {
			return keyResult(AllowedByKeyPolicy, kp.Allow)
		}
		if kp.AccountAllow.Found() && idAllowed {
			return Result{Allowed: true, Reason: AllowedByIdentityPolicy, Sid: idAllow.Sid, Statement: idAllow.Statement, Policy: "identity"}
		}
	default:
		m := kp.Allow
		if !m.Found() {
			m = kp.AccountAllow
		}
		if m.Found() && idAllowed {
			return keyResult(AllowedCrossAccount, m)
		}
	}
	if in.GrantAllows {
		return Result{Allowed: true, Reason: AllowedByGrant}
	}
	if hasIdentity && (kp.Allow.Found() || kp.AccountAllow.Found()) {
		return Result{Reason: NoIdentityPolicyAllows}
	}
	return Result{Reason: KeyPolicyDoesNotAllow}
}

// LockoutSafe reports whether keyPolicy would still let caller call
// kms:PutKeyPolicy, the check KMS makes on CreateKey and PutKeyPolicy
// unless BypassPolicyLockoutSafetyCheck is set. The policy must name the
// caller or its account (the account then delegating to the IAM
// permission the caller is using right now) and no Deny may apply. The
// request context holds only the keys derived from the caller, so a
// statement conditioned on anything else does not count.
func LockoutSafe(keyPolicy *Document, caller Principal) bool {
	if keyPolicy == nil {
		return false
	}
	req := Request{Principal: caller, Action: "kms:PutKeyPolicy", Resource: "*"}
	e := env{req: &req, anyResource: true}
	ev := keyPolicy.evaluate(&e)
	return !ev.Deny.Found() && (ev.Allow.Found() || ev.AccountAllow.Found())
}

// DefaultKeyPolicy is the key policy KMS gives a key created without one:
// the account (its root) may do everything with the key, which delegates
// access to the account's identity policies.
func DefaultKeyPolicy(account string) string {
	return `{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {
      "AWS" : "arn:aws:iam::` + account + `:root"
    },
    "Action" : "kms:*",
    "Resource" : "*"
  } ]
}`
}
