package policy

import (
	"fmt"
	"strings"
)

// PrincipalType is the kind of identity making a request.
type PrincipalType int

// Principal types. The zero value is Anonymous, the caller with no rights.
const (
	Anonymous     PrincipalType = iota
	Root                        // an account's root user: arn:aws:iam::ACCT:root
	User                        // an IAM user
	Role                        // an IAM role itself (calls are normally made by its sessions)
	AssumedRole                 // a session of a role: arn:aws:sts::ACCT:assumed-role/Role/Session
	FederatedUser               // arn:aws:sts::ACCT:federated-user/Name
	Service                     // an AWS service principal such as kms.amazonaws.com
)

var principalTypeNames = [...]string{"Anonymous", "Root", "User", "Role", "AssumedRole", "FederatedUser", "Service"}

func (t PrincipalType) String() string {
	if t >= 0 && int(t) < len(principalTypeNames) {
		return principalTypeNames[t]
	}
	return fmt.Sprintf("PrincipalType(%d)", int(t))
}

// Principal is who makes a request.
type Principal struct {
	Type      PrincipalType
	ARN       string // for Service, the service name, e.g. "kms.amazonaws.com"
	AccountID string // empty for Service and Anonymous
	// RoleARN is, for an AssumedRole session, the ARN of the role
	// (arn:aws:iam::ACCT:role/path/Name). A statement naming the role
	// matches all of its sessions.
	RoleARN string
}

// ParsePrincipal derives a Principal from an IAM or STS ARN. For an
// assumed-role session the role ARN is built without a path; set RoleARN
// yourself when the role has one.
func ParsePrincipal(principalARN string) (Principal, error) {
	// Built only on failure: callers parse the caller's ARN per request.
	bad := func() error { return fmt.Errorf("policy: %q is not a principal ARN", principalARN) }
	a, ok := splitARN(principalARN)
	if !ok || !isAccountID(a.account) {
		return Principal{}, bad()
	}
	p := Principal{ARN: principalARN, AccountID: a.account}
	switch {
	case a.service == "iam" && a.resource == "root":
		p.Type = Root
	case a.service == "iam" && hasNamedPrefix(a.resource, "user/"):
		p.Type = User
	case a.service == "iam" && hasNamedPrefix(a.resource, "role/"):
		p.Type = Role
	case a.service == "sts" && hasNamedPrefix(a.resource, "assumed-role/"):
		parts := strings.Split(a.resource, "/")
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return Principal{}, bad()
		}
		p.Type = AssumedRole
		p.RoleARN = "arn:" + a.partition + ":iam::" + a.account + ":role/" + parts[1]
	case a.service == "sts" && hasNamedPrefix(a.resource, "federated-user/"):
		p.Type = FederatedUser
	default:
		return Principal{}, bad()
	}
	return p, nil
}

// userName is the IAM user name (the last path element), for aws:username.
func (p *Principal) userName() string {
	if p.Type != User {
		return ""
	}
	return p.ARN[strings.LastIndexByte(p.ARN, '/')+1:]
}

// principalARN is the value of aws:PrincipalArn: the role, not the
// session, for assumed roles.
func (p *Principal) principalARN() string {
	if p.Type == AssumedRole && p.RoleARN != "" {
		return p.RoleARN
	}
	if p.Type == Service || p.Type == Anonymous {
		return ""
	}
	return p.ARN
}

// awsPrincipalType is the value of aws:PrincipalType.
func (p *Principal) awsPrincipalType() string {
	switch p.Type {
	case Root:
		return "Account"
	case User:
		return "User"
	case Role, AssumedRole:
		return "AssumedRole"
	case FederatedUser:
		return "FederatedUser"
	case Anonymous:
		return "Anonymous"
	}
	return ""
}

// principalMatch is how a Principal element names a caller.
type principalMatch uint8

const (
	noMatch principalMatch = iota
	// accountMatch: the element names the caller's account, which in a key
	// policy delegates to the identity policies of the account's principals.
	accountMatch
	// directMatch: the element names the caller itself (or everyone).
	directMatch
)

func (ps *Principals) match(p *Principal) principalMatch {
	if ps.Any {
		return directMatch
	}
	best := noMatch
	switch p.Type {
	case Service:
		for _, s := range ps.Service {
			if s == p.ARN {
				return directMatch
			}
		}
		return noMatch
	case Anonymous:
		return noMatch
	}
	for i := range ps.aws {
		a := &ps.aws[i]
		if a.account != "" {
			if a.account == p.AccountID {
				if p.Type == Root {
					return directMatch
				}
				best = accountMatch
			}
			continue
		}
		if a.arn == p.ARN || (p.Type == AssumedRole && a.arn == p.RoleARN) {
			return directMatch
		}
	}
	return best
}
