package cli

import (
	"context"
	"strings"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/kms"
)

// identityPolicies adapts the directory to the domain's lookup.
func identityPolicies(dir *identity.Directory) kms.IdentityPolicies {
	return func(ctx context.Context, c kms.Request) ([]string, error) {
		return dir.Policies(ctx, c.Principal)
	}
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
		err := svc.AuthorizeIdentityOnly(ctx, kms.Request{Principal: c, Operation: op.Name, Action: op.Action})
		if e, ok := kms.AsError(err); ok && e.Code == kms.AccessDenied {
			return &awsjson.Error{Type: awsjson.AccessDeniedException, Status: 400, Message: e.Message}
		}
		return err
	}
}

// principalTags adapts the directory to the domain's tag lookup.
func principalTags(dir *identity.Directory) kms.PrincipalTags {
	return func(ctx context.Context, c kms.Request) (map[string]string, error) {
		return dir.PrincipalTags(ctx, c.Principal)
	}
}
