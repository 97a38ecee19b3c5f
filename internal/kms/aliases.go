package kms

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// AliasEntry is one ListAliases row.
type AliasEntry struct {
	Name, ARN, TargetKeyID string
	Created, Updated       time.Time
}

func checkAliasName(name string) error {
	// AWS answers a malformed name with ValidationException (the
	// InvalidAliasNameException is for reserved names).
	if !strings.HasPrefix(name, "alias/") || len(name) <= len("alias/") {
		return errorf(Validation, "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
	}
	if strings.Contains(name, ":") {
		return errorf(Validation, "Alias name %s must not contain ':'.", name)
	}
	if strings.HasPrefix(name, "alias/aws/") {
		return errorf(InvalidAliasName, "Alias %s must not begin with alias/aws/, which is reserved for AWS managed keys.", name)
	}
	return nil
}

// aliasTarget checks an alias name and resolves (and authorizes) the key it
// is to point at, which must not be pending deletion.
func (s *Service) aliasTarget(ctx context.Context, c Request, name, target string) (store.Key, error) {
	if err := checkAliasName(name); err != nil {
		return store.Key{}, err
	}
	k, err := s.resolveKey(ctx, c, target, resolveOpts{})
	if err != nil {
		return store.Key{}, err
	}
	if pendingDeletionState(k.State) {
		return store.Key{}, s.pendingDeletion(k)
	}
	return k, nil
}

// CreateAlias points a new alias at a key (key id or key ARN).
func (s *Service) CreateAlias(ctx context.Context, c Request, name, target string) error {
	k, err := s.aliasTarget(ctx, c, name, target)
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	err = s.st.CreateAlias(ctx, store.Alias{AccountID: c.AccountID, Region: s.regionOf(c), Name: name, KeyID: k.ID, Created: now, Updated: now})
	switch {
	case errors.Is(err, store.ErrExists):
		return errorf(AlreadyExists, "An alias with the name %s already exists", s.aliasARN(c, name))
	case errors.Is(err, store.ErrNotFound):
		return errorf(NotFound, "Key '%s' does not exist", keyARN(k))
	case err != nil:
		return internal("CreateAlias", err)
	}
	return nil
}

// UpdateAlias points an existing alias at another key.
func (s *Service) UpdateAlias(ctx context.Context, c Request, name, target string) error {
	k, err := s.aliasTarget(ctx, c, name, target)
	if err != nil {
		return err
	}
	old, err := s.st.GetAlias(ctx, c.AccountID, s.regionOf(c), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Alias %s is not found.", s.aliasARN(c, name))
	}
	if err != nil {
		return internal("UpdateAlias", err)
	}
	if cur, err := s.getKey(ctx, c.AccountID, s.regionOf(c), old.KeyID); err == nil && (cur.KeySpec != k.KeySpec || cur.KeyUsage != k.KeyUsage) {
		return errorf(Validation, "The new target key must have the same key spec and key usage as the current target key.")
	}
	err = s.st.UpdateAlias(ctx, store.Alias{AccountID: c.AccountID, Region: s.regionOf(c), Name: name, KeyID: k.ID, Updated: s.now().UTC().Truncate(time.Millisecond)})
	s.dropAlias(c.AccountID, s.regionOf(c), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Alias %s is not found.", s.aliasARN(c, name))
	}
	if err != nil {
		return internal("UpdateAlias", err)
	}
	return nil
}

func (s *Service) dropAlias(account, region, name string) {
	s.aliases.Delete(account + "/" + region + "/" + name)
}

// dropAliasAll drops an alias name of account in every Region (an
// invalidation from another replica names no Region).
func (s *Service) dropAliasAll(account, name string) {
	s.aliases.DeleteFunc(func(a, _ string) bool {
		return strings.HasPrefix(a, account+"/") && strings.HasSuffix(a, "/"+name)
	})
}

// DeleteAlias removes an alias; the key is untouched.
func (s *Service) DeleteAlias(ctx context.Context, c Request, name string) error {
	if err := checkAliasName(name); err != nil {
		return err
	}
	a, err := s.st.GetAlias(ctx, c.AccountID, s.regionOf(c), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Alias %s is not found.", s.aliasARN(c, name))
	}
	if err != nil {
		return internal("DeleteAlias", err)
	}
	if k, err := s.getKey(ctx, c.AccountID, s.regionOf(c), a.KeyID); err == nil {
		if err := s.authorize(ctx, c, &k, nil); err != nil {
			return err
		}
	} else if err := s.authorize(ctx, c, nil, nil); err != nil {
		return err
	}
	err = s.st.DeleteAlias(ctx, c.AccountID, s.regionOf(c), name)
	s.dropAlias(c.AccountID, s.regionOf(c), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Alias %s is not found.", s.aliasARN(c, name))
	}
	if err != nil {
		return internal("DeleteAlias", err)
	}
	return nil
}

// ListAliases lists the account's aliases, optionally of one key.
func (s *Service) ListAliases(ctx context.Context, c Request, keyID string, limit int, marker string) ([]AliasEntry, Page, error) {
	after, err := decodeMarker(marker)
	if err != nil {
		return nil, Page{}, err
	}
	if err := s.authorize(ctx, c, nil, nil); err != nil {
		return nil, Page{}, err
	}
	var only string
	if keyID != "" {
		k, err := s.resolveKey(ctx, c, keyID, resolveOpts{noAuth: true})
		if err != nil {
			return nil, Page{}, err
		}
		only = k.ID
	}
	limit = pageLimit(limit)
	as, err := s.st.ListAliases(ctx, c.AccountID, s.regionOf(c), only, after, limit+1)
	if err != nil {
		return nil, Page{}, internal("ListAliases", err)
	}
	var p Page
	if len(as) > limit {
		as = as[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(as[limit-1].Name)}
	}
	out := make([]AliasEntry, len(as))
	for i, a := range as {
		out[i] = AliasEntry{Name: a.Name, ARN: aliasARNIn(a.Region, a.AccountID, a.Name), TargetKeyID: a.KeyID, Created: a.Created, Updated: a.Updated}
	}
	return out, p, nil
}
