package kmsapi

import (
	"context"

	"github.com/keyhold/keyhold/internal/kms"
)

// grantTokened is a request that carries GrantTokens; handler hands them to
// the domain, which rejects a malformed or forged one before authorizing.
type grantTokened interface{ grantTokenList() []string }

func (in *keyIDIn) grantTokenList() []string                           { return in.GrantTokens }
func (in *encryptIn) grantTokenList() []string                         { return in.GrantTokens }
func (in *decryptIn) grantTokenList() []string                         { return in.GrantTokens }
func (in *reEncryptIn) grantTokenList() []string                       { return in.GrantTokens }
func (in *generateDataKeyIn) grantTokenList() []string                 { return in.GrantTokens }
func (in *generateDataKeyWithoutPlaintextIn) grantTokenList() []string { return in.GrantTokens }
func (in *createGrantIn) grantTokenList() []string                     { return in.GrantTokens }

type grantConstraints struct {
	EncryptionContextSubset map[string]string `json:",omitempty"`
	EncryptionContextEquals map[string]string `json:",omitempty"`
}

type createGrantIn struct {
	KeyId             string
	GranteePrincipal  string
	RetiringPrincipal string
	Operations        []string
	Constraints       *grantConstraints
	GrantTokens       []string
	Name              string
	DryRun            *bool
}

type createGrantOut struct {
	GrantToken string
	GrantId    string
}

func (a *API) createGrant(ctx context.Context, c kms.Request, in *createGrantIn) (any, error) {
	var cons *kms.GrantConstraints
	if in.Constraints != nil {
		cons = &kms.GrantConstraints{EncryptionContextEquals: in.Constraints.EncryptionContextEquals, EncryptionContextSubset: in.Constraints.EncryptionContextSubset}
	}
	out, err := a.svc.CreateGrant(ctx, c, kms.CreateGrantInput{KeyID: in.KeyId, GranteePrincipal: in.GranteePrincipal,
		RetiringPrincipal: in.RetiringPrincipal, Operations: in.Operations, Constraints: cons, Name: in.Name, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return createGrantOut{GrantToken: out.GrantToken, GrantId: out.GrantID}, nil
}

type grantListEntry struct {
	KeyId             string
	GrantId           string
	Name              *string `json:",omitempty"`
	CreationDate      *epoch
	GranteePrincipal  string
	RetiringPrincipal *string `json:",omitempty"`
	IssuingAccount    string
	Operations        []string
	Constraints       *grantConstraints `json:",omitempty"`
}

type listGrantsOut struct {
	Grants     []grantListEntry
	NextMarker *string `json:",omitempty"`
	Truncated  bool
}

func toListGrantsOut(gs []kms.GrantEntry, p kms.Page) listGrantsOut {
	out := listGrantsOut{Grants: make([]grantListEntry, len(gs)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, g := range gs {
		e := grantListEntry{KeyId: g.KeyARN, GrantId: g.GrantID, Name: strp(g.Name), CreationDate: toEpoch(g.Created),
			GranteePrincipal: g.GranteePrincipal, RetiringPrincipal: strp(g.RetiringPrincipal), IssuingAccount: g.IssuingAccount,
			Operations: g.Operations}
		if g.Constraints != nil {
			e.Constraints = &grantConstraints{EncryptionContextEquals: g.Constraints.EncryptionContextEquals,
				EncryptionContextSubset: g.Constraints.EncryptionContextSubset}
		}
		out.Grants[i] = e
	}
	return out
}

type listGrantsIn struct {
	Limit            int
	Marker           string
	KeyId            string
	GrantId          string
	GranteePrincipal string
}

func (a *API) listGrants(ctx context.Context, c kms.Request, in *listGrantsIn) (any, error) {
	gs, p, err := a.svc.ListGrants(ctx, c, kms.ListGrantsInput{KeyID: in.KeyId, GrantID: in.GrantId,
		GranteePrincipal: in.GranteePrincipal, Limit: in.Limit, Marker: in.Marker})
	if err != nil {
		return nil, err
	}
	return toListGrantsOut(gs, p), nil
}

type listRetirableGrantsIn struct {
	Limit             int
	Marker            string
	RetiringPrincipal string
}

func (a *API) listRetirableGrants(ctx context.Context, c kms.Request, in *listRetirableGrantsIn) (any, error) {
	gs, p, err := a.svc.ListRetirableGrants(ctx, c, in.RetiringPrincipal, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	return toListGrantsOut(gs, p), nil
}

type retireGrantIn struct {
	GrantToken string
	KeyId      string
	GrantId    string
	DryRun     *bool
}

func (a *API) retireGrant(ctx context.Context, c kms.Request, in *retireGrantIn) (any, error) {
	return empty{}, a.svc.RetireGrant(ctx, c, kms.RetireGrantInput{GrantToken: in.GrantToken, KeyID: in.KeyId,
		GrantID: in.GrantId, DryRun: isTrue(in.DryRun)})
}

type revokeGrantIn struct {
	KeyId   string
	GrantId string
	DryRun  *bool
}

func (a *API) revokeGrant(ctx context.Context, c kms.Request, in *revokeGrantIn) (any, error) {
	return empty{}, a.svc.RevokeGrant(ctx, c, in.KeyId, in.GrantId, isTrue(in.DryRun))
}
