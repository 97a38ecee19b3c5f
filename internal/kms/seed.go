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
// material. Origin AWS_KMS (material given or generated) or EXTERNAL
// (material given: imported; absent: PendingImport). Keys of custom key
// stores (AWS_CLOUDHSM, EXTERNAL_KEY_STORE) cannot be seeded: their
// material lives in an HSM cluster or behind an XKS proxy.
type SeedKeyInput struct {
	ID          string
	Description string
	KeySpec     string
	KeyUsage    string
	Origin      string
	// Material is the key material as ImportKeyMaterial takes it once
	// unwrapped: raw bytes for SYMMETRIC_DEFAULT (32) and HMAC keys, a
	// PKCS#8 DER private key of exactly KeySpec for asymmetric ones. nil
	// generates it (AWS_KMS) or leaves the key PendingImport (EXTERNAL).
	Material []byte
	// ExpirationModel and ValidTo describe imported material (EXTERNAL),
	// as ImportKeyMaterial's parameters do: ValidTo alone implies
	// KEY_MATERIAL_EXPIRES.
	ExpirationModel string
	ValidTo         time.Time
	// Policy is the key policy; "" is the default policy.
	Policy   string
	Tags     []store.Tag
	Disabled bool
}

// SeedKey creates a key (in the service's default Region) as an operator declared it, outside of any caller's
// authorization (the operator owns the process). It is idempotent: a key
// that exists is left as it is and created is false. Errors name the key
// and never hold its material.
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
	switch in.Origin {
	case OriginAWSKMS, OriginExternal:
	case OriginCloudHSM, OriginXKS:
		return false, fmt.Errorf("key %s: Origin %s cannot be seeded: the key material of a custom key store's keys lives in its HSM cluster or behind its XKS proxy, which a seed file does not create; create the store and its keys with the API once keyhold runs", in.ID, in.Origin)
	default:
		return false, fmt.Errorf("key %s: unknown Origin %s (want AWS_KMS or EXTERNAL)", in.ID, in.Origin)
	}
	model, validTo, err := s.seedExpiration(in)
	if err != nil {
		return false, fmt.Errorf("key %s: %w", in.ID, err)
	}
	if in.Origin == OriginExternal && in.Material == nil && in.Disabled {
		return false, fmt.Errorf("key %s: an EXTERNAL key without KeyMaterial is PendingImport and cannot be disabled", in.ID)
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
	now := s.now().UTC().Truncate(time.Millisecond)
	k := store.Key{
		AccountID: account, Region: s.region, ID: in.ID, CreationDate: now,
		Description: in.Description, KeyUsage: in.KeyUsage, KeySpec: in.KeySpec, Origin: in.Origin,
		State: state, Policy: keyPolicy, Tags: copyTags(in.Tags),
	}
	switch {
	case in.Material != nil:
		material, err := keyspec.CheckImported(in.KeySpec, in.Material)
		if err != nil {
			return false, fmt.Errorf("key %s: KeyMaterial: %w", in.ID, err)
		}
		defer clear(material)
		// The material id is derived from the key id and the material, so
		// that the same seed on two data directories makes keys that
		// decrypt each other's ciphertexts (the blob names the material).
		h := sha256.New()
		h.Write([]byte("keyhold seed material id\x00" + in.ID + "\x00"))
		h.Write(material)
		m := store.KeyMaterial{ID: h.Sum(nil)[:16], Created: now}
		if m.Sealed, err = s.soft.SealKeyMaterial(in.ID, m.ID, material); err != nil {
			return false, fmt.Errorf("key %s: %w", in.ID, err)
		}
		if in.Origin == OriginExternal {
			// As ImportKeyMaterial records it: re-importing the same
			// material later is recognised by its digest.
			m.Digest, m.ExpirationModel, m.ValidTo = materialDigest(in.ID, material), model, validTo
		}
		k.Materials = []store.KeyMaterial{m}
		k.BackingKeyID, k.SealedMaterial = m.ID, m.Sealed
	case in.Origin == OriginAWSKMS:
		if k.SealedMaterial, k.BackingKeyID, err = s.soft.NewKeyMaterial(in.ID, in.KeySpec); err != nil {
			return false, fmt.Errorf("key %s: %w", in.ID, err)
		}
		k.Materials = []store.KeyMaterial{{ID: k.BackingKeyID, Sealed: k.SealedMaterial, Created: now}}
	default:
		k.State = StatePendingImport
	}
	if err := s.st.CreateKey(ctx, k); err != nil {
		if errors.Is(err, store.ErrExists) {
			return false, nil
		}
		return false, internal("SeedKey", err)
	}
	return true, nil
}

// seedExpiration checks a seeded key's ExpirationModel and ValidTo with
// ImportKeyMaterial's rules; they apply only to EXTERNAL keys with
// material.
func (s *Service) seedExpiration(in SeedKeyInput) (string, time.Time, error) {
	if in.ExpirationModel == "" && in.ValidTo.IsZero() {
		if in.Origin == OriginExternal {
			return DoesNotExpire, time.Time{}, nil
		}
		return "", time.Time{}, nil
	}
	if in.Origin != OriginExternal || in.Material == nil {
		return "", time.Time{}, errors.New("ExpirationModel and ValidTo describe imported key material: they need Origin EXTERNAL and KeyMaterial")
	}
	model := in.ExpirationModel
	if model == "" {
		model = ExpiresModel
	}
	switch {
	case model != ExpiresModel && model != DoesNotExpire:
		return "", time.Time{}, fmt.Errorf("ExpirationModel %q: want %s or %s", model, ExpiresModel, DoesNotExpire)
	case model == ExpiresModel && in.ValidTo.IsZero():
		return "", time.Time{}, errors.New("a ValidTo date is required when ExpirationModel is KEY_MATERIAL_EXPIRES")
	case model == DoesNotExpire && !in.ValidTo.IsZero():
		return "", time.Time{}, errors.New("ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
	case model == ExpiresModel && (in.ValidTo.Before(s.now()) || in.ValidTo.After(s.now().Add(365*day))):
		return "", time.Time{}, fmt.Errorf("ValidTo %s must be in the future and at most 365 days from now (as ImportKeyMaterial requires)", in.ValidTo.Format(time.RFC3339))
	}
	return model, in.ValidTo.UTC(), nil
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
