package cli

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/policy"
)

// identityPolicies adapts the directory to the domain's lookup.
func identityPolicies(dir *identity.Directory) kms.IdentityPolicies {
	return func(ctx context.Context, c kms.Caller) ([]string, error) {
		return dir.Policies(ctx, identity.Principal{AccountID: c.AccountID, ARN: c.ARN, RoleARN: c.RoleARN})
	}
}

func parsedIdentityPolicies(ctx context.Context, dir *identity.Directory, p identity.Principal) []*policy.Document {
	texts, _ := dir.Policies(ctx, p)
	var docs []*policy.Document
	for _, t := range texts {
		if d, err := policy.Parse(t, policy.IdentityPolicy); err == nil {
			docs = append(docs, d)
		}
	}
	return docs
}

func policyPrincipal(arn, roleARN, account string) policy.Principal {
	pp, err := policy.ParsePrincipal(arn)
	if err != nil {
		return policy.Principal{ARN: arn, AccountID: account}
	}
	if roleARN != "" {
		pp.RoleARN = roleARN
	}
	return pp
}

// serverAuthorizer decides the operations that are not on a KMS key and
// that the KMS domain does not decide itself: the CloudHSM control plane
// and IAM. They are identity-policy only and never cross-account. KMS
// operations are authorized in the domain, where the key is known.
func serverAuthorizer(svc *kms.Service) func(ctx context.Context, c awsjson.Caller, op awsjson.Operation, body []byte) error {
	return func(ctx context.Context, c awsjson.Caller, op awsjson.Operation, body []byte) error {
		switch {
		case strings.HasPrefix(op.Action, "kms:"):
			return nil
		case op.Action == "sts:GetCallerIdentity", op.Action == "sts:AssumeRole":
			// GetCallerIdentity needs no permission; AssumeRole is decided
			// against the role's trust policy.
			return nil
		}
		err := svc.AuthorizeIdentityOnly(ctx, kms.Caller{AccountID: c.AccountID, ARN: c.ARN, RoleARN: c.RoleARN}, op.Action)
		if e, ok := kms.AsError(err); ok && e.Code == kms.AccessDenied {
			return &awsjson.Error{Type: awsjson.AccessDeniedException, Status: 400, Message: e.Message}
		}
		return err
	}
}

// trustCheck decides sts:AssumeRole: the role's trust policy is the
// resource policy; naming the caller allows it, naming the caller's
// account delegates to the caller's identity policies.
func trustCheck(dir *identity.Directory) identity.TrustCheck {
	return func(ctx context.Context, trust, roleARN string, caller identity.Principal) bool {
		doc, err := trustDocument(trust)
		if err != nil {
			return false
		}
		p := policyPrincipal(caller.ARN, caller.RoleARN, caller.AccountID)
		roleAccount := ""
		if parts := strings.Split(roleARN, ":"); len(parts) > 4 {
			roleAccount = parts[4]
		}
		in := policy.Input{KeyPolicy: doc, KeyAccount: roleAccount, IdentityPolicies: parsedIdentityPolicies(ctx, dir, caller),
			Request: policy.Request{Principal: p, Action: "sts:AssumeRole", Resource: roleARN, Context: policy.NewContext().SetPrincipal(p)}}
		return policy.Decide(in).Allowed
	}
}

// trustDocument parses a role trust policy: a resource policy whose
// statements name principals and, unlike key policies, usually no Resource
// (the role itself is the resource).
func trustDocument(text string) (*policy.Document, error) {
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

// principalTags adapts the directory to the domain's tag lookup.
func principalTags(dir *identity.Directory) kms.PrincipalTags {
	return func(ctx context.Context, c kms.Caller) (map[string]string, error) {
		return dir.PrincipalTags(ctx, identity.Principal{AccountID: c.AccountID, ARN: c.ARN, RoleARN: c.RoleARN})
	}
}
