package kms

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/keyhold/keyhold/internal/keyspec"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/store"
)

// SeedKeyInput is a key a seed file declares: fixed id, optionally fixed
// material. Origin AWS_KMS only; material can be given for
// SYMMETRIC_DEFAULT keys, other key specs are generated.
type SeedKeyInput struct {
	ID          string
	Description string
	KeySpec     string
	KeyUsage    string
	Origin      string
	// Material is the 32-byte key material; nil generates it.
	Material []byte
	// Policy is the key policy; "" is the default policy.
	Policy   string
	Tags     []store.Tag
	Disabled bool
}

// SeedKey creates a key (in the service's default Region) as an operator declared it, outside of any caller's
// authorization (the operator owns the process). It is idempotent: a key
// that exists is left as it is and created is false.
func (s *Service) SeedKey(ctx context.Context, account string, in SeedKeyInput) (created bool, err error) {
	if _, err := s.st.GetKey(ctx, account, s.region, in.ID); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, internal("SeedKey", err)
	}
	if !isKeyUUID(in.ID) {
		return false, fmt.Errorf("key id %q: want a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab", in.ID)
	}
	if in.KeySpec == "" {
		in.KeySpec = SpecSymmetric
	}
	if in.KeyUsage == "" {
		in.KeyUsage = UsageEncryptDecrypt
	}
	if in.Origin == "" {
		in.Origin = OriginAWSKMS
	}
	info, ok := keyspec.Lookup(in.KeySpec)
	if !ok || !info.AllowsUsage(in.KeyUsage) {
		return false, fmt.Errorf("key %s: KeySpec %s with KeyUsage %s is not a key keyhold can create", in.ID, in.KeySpec, in.KeyUsage)
	}
	if in.Origin != OriginAWSKMS {
		return false, fmt.Errorf("key %s: only origin AWS_KMS can be seeded (imported and custom key store keys cannot yet)", in.ID)
	}
	if in.Material != nil && in.KeySpec != SpecSymmetric {
		return false, fmt.Errorf("key %s: KeyMaterial can be given only for SYMMETRIC_DEFAULT keys; other key specs are generated", in.ID)
	}
	if err := validateTags(in.Tags); err != nil {
		return false, fmt.Errorf("key %s: %w", in.ID, err)
	}
	keyPolicy := DefaultPolicy(account)
	if in.Policy != "" {
		if _, err := policy.Parse(in.Policy, policy.KeyPolicy); err != nil {
			return false, fmt.Errorf("key %s: policy: %w", in.ID, err)
		}
		keyPolicy = in.Policy
	}
	state := StateEnabled
	if in.Disabled {
		state = StateDisabled
	}
	k := store.Key{
		AccountID: account, Region: s.region, ID: in.ID, CreationDate: s.now().UTC().Truncate(time.Millisecond),
		Description: in.Description, KeyUsage: in.KeyUsage, KeySpec: in.KeySpec, Origin: in.Origin,
		State: state, Policy: keyPolicy, Tags: copyTags(in.Tags),
	}
	if in.Material != nil {
		if len(in.Material) != 32 {
			return false, fmt.Errorf("key %s: KeyMaterial must be 32 bytes, not %d", in.ID, len(in.Material))
		}
		// The material id is derived from the key id and the material, so
		// that the same seed on two data directories makes keys that
		// decrypt each other's ciphertexts (the blob names the material).
		h := sha256.New()
		h.Write([]byte("keyhold seed material id\x00" + in.ID + "\x00"))
		h.Write(in.Material)
		k.BackingKeyID = h.Sum(nil)[:16]
		k.SealedMaterial, err = s.soft.SealKeyMaterial(in.ID, k.BackingKeyID, in.Material)
	} else {
		k.SealedMaterial, k.BackingKeyID, err = s.soft.NewKeyMaterial(in.ID, in.KeySpec)
	}
	if err != nil {
		return false, fmt.Errorf("key %s: %w", in.ID, err)
	}
	if err := s.st.CreateKey(ctx, k); err != nil {
		if errors.Is(err, store.ErrExists) {
			return false, nil
		}
		return false, internal("SeedKey", err)
	}
	return true, nil
}

// SeedAlias points an alias at a key, creating or moving it. It is
// idempotent; created is false when the alias already pointed there.
func (s *Service) SeedAlias(ctx context.Context, account, name, keyID string) (changed bool, err error) {
	if err := checkAliasName(name); err != nil {
		return false, fmt.Errorf("alias %s: %w", name, err)
	}
	if _, err := s.st.GetKey(ctx, account, s.region, keyID); err != nil {
		return false, fmt.Errorf("alias %s: target key %s: %w", name, keyID, err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	old, err := s.st.GetAlias(ctx, account, s.region, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := s.st.CreateAlias(ctx, store.Alias{AccountID: account, Region: s.region, Name: name, KeyID: keyID, Created: now, Updated: now}); err != nil {
			return false, internal("SeedAlias", err)
		}
		return true, nil
	case err != nil:
		return false, internal("SeedAlias", err)
	case old.KeyID == keyID:
		return false, nil
	}
	if err := s.st.UpdateAlias(ctx, store.Alias{AccountID: account, Region: s.region, Name: name, KeyID: keyID, Updated: now}); err != nil {
		return false, internal("SeedAlias", err)
	}
	s.dropAlias(account, s.region, name)
	return true, nil
}

func isKeyUUID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
