package kms

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keyspec"
	"github.com/keyhold/keyhold/internal/store"
)

// Imported key material (Origin EXTERNAL). GetParametersForImport makes an
// RSA wrapping key (sealed by the root key, bound to the key and token id)
// valid for 24 hours; ImportKeyMaterial unwraps, checks and seals the
// material; re-import must bring the same material; DeleteImportedKeyMaterial
// and expiry (ValidTo) return the key to PendingImport.

const (
	importTokenVersion = 1
	importTokenLen     = 1 + 16 + 16 // version | key id | token id
	importTokenTTL     = 24 * time.Hour

	ExpiresModel           = "KEY_MATERIAL_EXPIRES"
	DoesNotExpire          = "KEY_MATERIAL_DOES_NOT_EXPIRE"
	ImportNewMaterial      = "NEW_KEY_MATERIAL"
	ImportExistingMaterial = "EXISTING_KEY_MATERIAL"
	MaterialPending        = "PENDING_ROTATION"
)

// ImportParameters is GetParametersForImport's result.
type ImportParameters struct {
	KeyARN      string
	ImportToken []byte
	PublicKey   []byte
	ValidTo     time.Time
}

func (s *Service) externalKey(ctx context.Context, c Request, keyID string) (store.Key, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return k, err
	}
	if k.Origin != OriginExternal {
		return k, errorf(UnsupportedOperation, "%s origin is %s which is not valid for this operation.", keyARN(k), k.Origin)
	}
	if pendingDeletionState(k.State) {
		return k, s.pendingDeletion(k)
	}
	return k, nil
}

// GetParametersForImport returns a wrapping public key and import token.
func (s *Service) GetParametersForImport(ctx context.Context, c Request, keyID, algorithm, wrappingSpec string) (ImportParameters, error) {
	if err := keyspec.CheckWrapping(algorithm, wrappingSpec); err != nil {
		return ImportParameters{}, s.specErr("GetParametersForImport", store.Key{}, err)
	}
	k, err := s.externalKey(ctx, c, keyID)
	if err != nil {
		return ImportParameters{}, err
	}
	priv, pub, err := keyspec.NewWrappingKey(wrappingSpec)
	if err != nil {
		return ImportParameters{}, internal("GetParametersForImport", err)
	}
	defer clear(priv)
	tokenID := make([]byte, 16)
	if _, err := rand.Read(tokenID); err != nil {
		return ImportParameters{}, internal("GetParametersForImport", err)
	}
	sealed, err := s.soft.SealKeyMaterial(k.ID, tokenID, priv)
	if err != nil {
		return ImportParameters{}, internal("GetParametersForImport", err)
	}
	validTo := s.now().UTC().Add(importTokenTTL).Truncate(time.Millisecond)
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		k.Import = &store.ImportParameters{TokenID: tokenID, WrappingSpec: wrappingSpec, Algorithm: algorithm, SealedKey: sealed, ValidTo: validTo}
		return nil
	})
	if err != nil {
		return ImportParameters{}, err
	}
	id, _, _ := blob.ParseKeyID(k.ID)
	token := append([]byte{importTokenVersion}, id[:]...)
	token = append(token, tokenID...)
	return ImportParameters{KeyARN: keyARN(k), ImportToken: token, PublicKey: pub, ValidTo: validTo}, nil
}

// ImportInput holds ImportKeyMaterial's parameters.
type ImportInput struct {
	KeyID                string
	ImportToken          []byte
	EncryptedKeyMaterial []byte
	ValidTo              time.Time
	ExpirationModel      string
	ImportType           string
	Description          string
	KeyMaterialID        string
}

func materialDigest(keyID string, material []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keyhold-imported-material:" + keyID + ":"))
	h.Write(material)
	return h.Sum(nil)
}

// allImported says whether every material bound to the key (all but the
// ones pending rotation) is present: only then may the key be Enabled.
func allImported(k *store.Key) bool {
	for _, m := range k.Materials {
		if !m.Pending && len(m.Sealed) == 0 {
			return false
		}
	}
	return len(k.SealedMaterial) > 0
}

// checkImportOptions validates the options AWS allows only for symmetric
// encryption keys and resolves the default ImportType.
func (s *Service) checkImportOptions(k store.Key, in ImportInput) (string, error) {
	switch in.ImportType {
	case "", ImportNewMaterial, ImportExistingMaterial:
	default:
		return "", errorf(Validation, "1 validation error detected: Value '%s' at 'importType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL]", in.ImportType)
	}
	if k.KeySpec != SpecSymmetric && (in.ImportType != "" || in.KeyMaterialID != "" || in.Description != "") {
		return "", errorf(Validation, "ImportType, KeyMaterialId and KeyMaterialDescription are valid only for symmetric encryption KMS keys; %s has KeySpec %s.", keyARN(k), k.KeySpec)
	}
	typ := in.ImportType
	if typ == "" {
		typ = ImportExistingMaterial
		if len(k.Materials) == 0 {
			typ = ImportNewMaterial
		}
	}
	if typ == ImportNewMaterial && in.KeyMaterialID != "" {
		return "", errorf(Validation, "KeyMaterialId cannot be specified when ImportType is NEW_KEY_MATERIAL.")
	}
	return typ, nil
}

// ImportKeyMaterial imports wrapped material; it returns the key ARN and
// the key material id. The first import binds the material to the key;
// EXISTING_KEY_MATERIAL re-imports material the key already has (after
// deletion or expiry, or to change its expiration); NEW_KEY_MATERIAL on a
// symmetric key that has material adds material PENDING_ROTATION, which
// RotateKeyOnDemand makes current.
func (s *Service) ImportKeyMaterial(ctx context.Context, c Request, in ImportInput) (string, []byte, error) {
	model := in.ExpirationModel
	if model == "" {
		model = DoesNotExpire
		if !in.ValidTo.IsZero() {
			model = ExpiresModel
		}
	}
	switch {
	case model == ExpiresModel && in.ValidTo.IsZero():
		return "", nil, errorf(Validation, "A ValidTo date is required when ExpirationModel is KEY_MATERIAL_EXPIRES.")
	case model == DoesNotExpire && !in.ValidTo.IsZero():
		return "", nil, errorf(Validation, "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.")
	case model == ExpiresModel && (in.ValidTo.Before(s.now()) || in.ValidTo.After(s.now().Add(365*day))):
		return "", nil, errorf(Validation, "ValidTo must be in the future and at most 365 days from now.")
	}
	k, err := s.externalKey(ctx, c, in.KeyID)
	if err != nil {
		return "", nil, err
	}
	if _, err := s.checkImportOptions(k, in); err != nil {
		return "", nil, err
	}
	id, _, _ := blob.ParseKeyID(k.ID)
	if len(in.ImportToken) != importTokenLen || in.ImportToken[0] != importTokenVersion || subtle.ConstantTimeCompare(in.ImportToken[1:17], id[:]) != 1 ||
		k.Import == nil || subtle.ConstantTimeCompare(in.ImportToken[17:], k.Import.TokenID) != 1 {
		return "", nil, errorf(InvalidImportToken, "The import token is invalid or does not belong to %s.", keyARN(k))
	}
	if !s.now().Before(k.Import.ValidTo) {
		return "", nil, errorf(ExpiredImportToken, "The import token expired at %s. Call GetParametersForImport again.", k.Import.ValidTo.Format(time.RFC3339))
	}
	wrappingKey, err := s.soft.OpenSealed(k.ID, k.Import.TokenID, k.Import.SealedKey)
	if err != nil {
		return "", nil, internal("ImportKeyMaterial", err)
	}
	defer clear(wrappingKey)
	raw, err := keyspec.Unwrap(k.Import.WrappingSpec, wrappingKey, k.Import.Algorithm, in.EncryptedKeyMaterial)
	if err != nil {
		return "", nil, s.specErr("ImportKeyMaterial", k, err)
	}
	defer clear(raw)
	material, err := keyspec.CheckImported(k.KeySpec, raw)
	if err != nil {
		return "", nil, s.specErr("ImportKeyMaterial", k, err)
	}
	defer clear(material)
	digest := materialDigest(k.ID, material)
	var materialID []byte
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		typ, err := s.checkImportOptions(*k, in)
		if err != nil {
			return err
		}
		arn := keyARN(*k)
		idx := -1
		for i, m := range k.Materials {
			if subtle.ConstantTimeCompare(m.Digest, digest) == 1 {
				idx = i
			}
		}
		if idx < 0 && typ == ImportNewMaterial && multiRegionKeyType(*k) == MultiRegionReplica {
			// A replica takes only the material of its primary (which
			// reaches it with the primary's import).
			return errorf(UnsupportedOperation, "%s is a multi-Region replica key: import new key material into its primary key %s, then the same key material into this key.",
				arn, keyARNIn(k.MultiRegion.PrimaryRegion, k.AccountID, k.ID))
		}
		var m store.KeyMaterial
		switch {
		case idx >= 0 && typ == ImportNewMaterial:
			return errorf(Validation, "This key material is already associated with %s (key material %s); import it with ImportType EXISTING_KEY_MATERIAL.", arn, FormatMaterialID(k.Materials[idx].ID))
		case idx >= 0:
			if in.KeyMaterialID != "" && in.KeyMaterialID != FormatMaterialID(k.Materials[idx].ID) {
				return errorf(IncorrectKeyMaterial, "The key material does not match key material id %s.", in.KeyMaterialID)
			}
			m = k.Materials[idx]
		case typ == ImportExistingMaterial || len(k.Materials) > 0 && k.KeySpec != SpecSymmetric:
			return errorf(IncorrectKeyMaterial, "The key material is not the key material previously imported into %s.", arn)
		default: // new material
			for _, p := range k.Materials {
				if p.Pending {
					return errorf(InvalidState, "%s already has key material %s pending rotation; rotate it in with RotateKeyOnDemand or delete it with DeleteImportedKeyMaterial first.", arn, FormatMaterialID(p.ID))
				}
			}
			m = store.KeyMaterial{Created: s.now().UTC().Truncate(time.Millisecond), Digest: digest, Pending: len(k.Materials) > 0}
			m.ID = make([]byte, 16)
			if _, err := rand.Read(m.ID); err != nil {
				return internal("ImportKeyMaterial", err)
			}
		}
		sealed, err := s.soft.SealKeyMaterial(k.ID, m.ID, material)
		if err != nil {
			return internal("ImportKeyMaterial", err)
		}
		m.Sealed, m.ExpirationModel, m.ValidTo = sealed, model, in.ValidTo.UTC()
		if in.Description != "" {
			m.Description = in.Description // else kept from the last import, as AWS does
		}
		if model == DoesNotExpire {
			m.ValidTo = time.Time{}
		}
		if idx >= 0 {
			k.Materials[idx] = m
		} else {
			k.Materials = append(k.Materials, m)
		}
		if !m.Pending && (len(k.BackingKeyID) == 0 || string(k.BackingKeyID) == string(m.ID)) {
			k.BackingKeyID, k.SealedMaterial = m.ID, sealed
		}
		if k.State == StatePendingImport && allImported(k) {
			k.State = StateEnabled
		}
		materialID = m.ID
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	s.soft.Forget(k.ID)
	return keyARN(k), materialID, nil
}

// DeleteImportedKeyMaterial deletes imported material: the current
// material when materialID is empty, else the one named. Deleting material
// bound to the key (current or an earlier one) returns the key to
// PendingImport until it is imported again; material pending rotation is
// removed outright (it was never used). It returns the key ARN and the id
// of the material deleted.
func (s *Service) DeleteImportedKeyMaterial(ctx context.Context, c Request, keyID, materialID string) (string, []byte, error) {
	k, err := s.externalKey(ctx, c, keyID)
	if err != nil {
		return "", nil, err
	}
	var deleted []byte
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		idx := -1
		for i := range k.Materials {
			if materialID == "" && string(k.Materials[i].ID) == string(k.BackingKeyID) || materialID != "" && FormatMaterialID(k.Materials[i].ID) == materialID {
				idx = i
			}
		}
		if idx < 0 {
			if materialID == "" {
				return errorf(InvalidState, "%s has no key material to delete.", keyARN(*k))
			}
			return errorf(NotFound, "Key material %s does not exist for %s.", materialID, keyARN(*k))
		}
		deleted = k.Materials[idx].ID
		if k.Materials[idx].Pending {
			k.Materials = append(k.Materials[:idx], k.Materials[idx+1:]...)
			return nil
		}
		k.Materials[idx].Sealed = nil
		if string(deleted) == string(k.BackingKeyID) {
			k.SealedMaterial = nil
		}
		k.State = StatePendingImport
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	s.soft.Forget(k.ID)
	return keyARN(k), deleted, nil
}

// expireImported deletes imported material whose ValidTo has passed; it
// reports whether anything changed. Expired material bound to the key
// makes the key PendingImport; expired material pending rotation just
// waits to be imported again.
func (s *Service) expireImported(k *store.Key, now time.Time) bool {
	changed := false
	for i, m := range k.Materials {
		if !m.ValidTo.IsZero() && !m.ValidTo.After(now) && len(m.Sealed) > 0 {
			k.Materials[i].Sealed = nil
			changed = true
			if string(m.ID) == string(k.BackingKeyID) {
				k.SealedMaterial = nil
			}
			if !m.Pending && !pendingDeletionState(k.State) {
				k.State = StatePendingImport
			}
		}
	}
	if changed {
		s.soft.Forget(k.ID)
	}
	return changed
}

// FormatMaterialID renders a key material id as the model's BackingKeyIdType
// (64 lowercase hex digits). keyhold's ids are 16 bytes (the width of the
// ciphertext blob's field); the other 32 digits are a SHA-256 check of them,
// so the rendering is fixed per material and a mistyped id never matches.
func FormatMaterialID(id []byte) string {
	if len(id) != 16 {
		return hex.EncodeToString(id)
	}
	sum := sha256.Sum256(append([]byte("keyhold key material id:"), id...))
	return hex.EncodeToString(id) + hex.EncodeToString(sum[:16])
}
