package kms

import (
	"context"
	"fmt"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Rotation as AWS documents it: automatic rotation of symmetric encryption
// keys whose material KMS generated, every RotationPeriodInDays (90-2560,
// 365 by default); on-demand rotation up to maxOnDemandRotations times per
// key; every earlier material stays and decrypts what it encrypted (the
// ciphertext names its material).

const (
	defaultRotationDays  = 365
	minRotationDays      = 90
	maxRotationDays      = 2560
	maxOnDemandRotations = 25 // the model: "a maximum of 25 times per KMS key"
	day                  = 24 * time.Hour
)

// Rotation types and key material states as the model spells them.
const (
	RotationAutomatic = "AUTOMATIC"
	RotationOnDemand  = "ON_DEMAND"
	MaterialCurrent   = "CURRENT"
	MaterialNonCurr   = "NON_CURRENT"
)

// NextRotation is when a key rotated (or enabled) at from rotates next.
func NextRotation(from time.Time, periodDays int) time.Time {
	return from.Add(time.Duration(periodDays) * day).UTC().Truncate(time.Second)
}

// rotatable says whether the key supports rotation at all: symmetric
// encryption keys with material KMS generated, outside custom key stores.
func (s *Service) rotatable(k store.Key) error {
	arn := keyARN(k)
	switch {
	case k.CustomKeyStoreID != "":
		return errorf(UnsupportedOperation, "%s is in a custom key store. Automatic and on-demand rotation are not supported for KMS keys in custom key stores.", arn)
	case k.KeySpec != SpecSymmetric:
		return errorf(UnsupportedOperation, "%s has KeySpec %s. Rotation is supported only for symmetric encryption KMS keys.", arn, k.KeySpec)
	case k.Origin != OriginAWSKMS:
		return errorf(UnsupportedOperation, "%s has imported key material. Automatic rotation is not supported for KMS keys with imported key material.", arn)
	}
	return nil
}

// changeRotation is the shared path of Enable/DisableKeyRotation: the key
// must be enabled (DisabledException) and support rotation.
func (s *Service) changeRotation(ctx context.Context, c Request, keyID string, fn func(k *store.Key)) error {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return err
	}
	if k.KeyManager == KeyManagerAWS {
		return errorf(UnsupportedOperation, "Rotation of AWS managed keys is not configurable.")
	}
	if err := replicaRotationRefused(k); err != nil {
		return err
	}
	_, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		switch s.effectiveState(*k) {
		case StateEnabled:
		case StateDisabled:
			return errorf(Disabled, "%s is disabled.", keyARN(*k))
		default:
			return errorf(InvalidState, "%s is %s.", keyARN(*k), stateWords(*k))
		}
		if err := s.rotatable(*k); err != nil {
			return err
		}
		fn(k)
		return nil
	})
	return err
}

func stateWords(k store.Key) string {
	switch k.State {
	case StatePendingDeletion:
		return "pending deletion"
	case StatePendingReplicaDeletion:
		return "pending deletion (waiting for its replica keys to be deleted)"
	case StatePendingImport:
		return "pending import"
	}
	return "unavailable"
}

// EnableKeyRotation turns on automatic rotation every periodDays (0 = 365).
func (s *Service) EnableKeyRotation(ctx context.Context, c Request, keyID string, periodDays int) error {
	if periodDays == 0 {
		periodDays = defaultRotationDays
	}
	if periodDays < minRotationDays || periodDays > maxRotationDays {
		return errorf(Validation, "1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between %d and %d", periodDays, minRotationDays, maxRotationDays)
	}
	return s.changeRotation(ctx, c, keyID, func(k *store.Key) {
		from := s.now()
		if k.Rotation.Enabled && !k.Rotation.Next.IsZero() {
			// A new period counts from the last rotation (or enablement).
			from = k.Rotation.Next.Add(-time.Duration(k.Rotation.PeriodDays) * day)
		}
		k.Rotation.Enabled, k.Rotation.PeriodDays = true, periodDays
		k.Rotation.Next = NextRotation(from, periodDays)
		if k.Rotation.Next.Before(s.now()) {
			k.Rotation.Next = s.now().UTC().Truncate(time.Second)
		}
	})
}

// DisableKeyRotation turns off automatic rotation.
func (s *Service) DisableKeyRotation(ctx context.Context, c Request, keyID string) error {
	return s.changeRotation(ctx, c, keyID, func(k *store.Key) {
		k.Rotation.Enabled, k.Rotation.Next = false, time.Time{}
	})
}

// RotationStatus is GetKeyRotationStatus's result.
type RotationStatus struct {
	KeyARN        string
	Enabled       bool
	PeriodDays    int
	Next          time.Time
	OnDemandStart time.Time
}

// GetKeyRotationStatus reports a key's rotation. Keys that cannot rotate
// (asymmetric, HMAC, imported, custom key store) report false, as AWS
// documents; AWS managed keys always report true.
func (s *Service) GetKeyRotationStatus(ctx context.Context, c Request, keyID string) (RotationStatus, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{crossAccount: true})
	if err != nil {
		return RotationStatus{}, err
	}
	out := RotationStatus{KeyARN: keyARN(k), OnDemandStart: k.Rotation.OnDemandStart}
	if k.KeyManager == KeyManagerAWS {
		out.Enabled, out.PeriodDays, out.Next = true, defaultRotationDays, k.Rotation.Next
		return out, nil
	}
	if s.rotatable(k) != nil || pendingDeletionState(k.State) || !k.Rotation.Enabled {
		return out, nil
	}
	out.Enabled, out.PeriodDays, out.Next = true, k.Rotation.PeriodDays, k.Rotation.Next
	return out, nil
}

// RotateKeyOnDemand rotates the key's material now.
func (s *Service) RotateKeyOnDemand(ctx context.Context, c Request, keyID string) (string, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return "", err
	}
	if k.KeyManager == KeyManagerAWS {
		return "", errorf(UnsupportedOperation, "On-demand rotation of AWS managed keys is not supported.")
	}
	if err := replicaRotationRefused(k); err != nil {
		return "", err
	}
	if err := s.replicasHoldPending(ctx, k); err != nil {
		return "", err
	}
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		switch s.effectiveState(*k) {
		case StateEnabled:
		case StateDisabled:
			return errorf(Disabled, "%s is disabled.", keyARN(*k))
		default:
			return errorf(InvalidState, "%s is %s.", keyARN(*k), stateWords(*k))
		}
		imported := k.Origin == OriginExternal && k.CustomKeyStoreID == "" && k.KeySpec == SpecSymmetric
		if !imported {
			if err := s.rotatable(*k); err != nil {
				return err
			}
		}
		if k.Rotation.OnDemandCount >= maxOnDemandRotations {
			return errorf(LimitExceeded, "%s has reached the limit of %d on-demand rotations.", keyARN(*k), maxOnDemandRotations)
		}
		if imported {
			if err := s.rotateImported(k); err != nil {
				return err
			}
		} else if err := s.rotate(k, RotationOnDemand); err != nil {
			return err
		}
		k.Rotation.OnDemandCount++
		return nil
	})
	if err != nil {
		return "", err
	}
	return keyARN(k), nil
}

// rotate gives k new material; the old stays in Materials.
func (s *Service) rotate(k *store.Key, rotationType string) error {
	sealed, id, err := s.soft.NewKeyMaterial(k.ID, k.KeySpec)
	if err != nil {
		return internal("rotate", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	if len(k.Materials) == 0 && len(k.BackingKeyID) > 0 {
		k.Materials = []store.KeyMaterial{{ID: k.BackingKeyID, Sealed: k.SealedMaterial, Created: k.CreationDate}}
	}
	k.Materials = append(k.Materials, store.KeyMaterial{ID: id, Sealed: sealed, Created: now, RotationType: rotationType})
	k.BackingKeyID, k.SealedMaterial = id, sealed
	if k.Rotation.Enabled {
		k.Rotation.Next = NextRotation(now, k.Rotation.PeriodDays)
	}
	return nil
}

// rotateImported makes the imported material pending rotation current
// (RotateKeyOnDemand on a symmetric key with imported material); the
// material it replaces stays for decryption.
func (s *Service) rotateImported(k *store.Key) error {
	for i := range k.Materials {
		m := &k.Materials[i]
		if !m.Pending {
			continue
		}
		if len(m.Sealed) == 0 {
			return errorf(InvalidState, "Key material %s of %s pending rotation has expired or was deleted; import it again before rotating.", FormatMaterialID(m.ID), keyARN(*k))
		}
		m.Pending, m.RotationType, m.Created = false, RotationOnDemand, s.now().UTC().Truncate(time.Millisecond)
		k.BackingKeyID, k.SealedMaterial = m.ID, m.Sealed
		return nil
	}
	return errorf(InvalidState, "%s has imported key material and no new key material in PENDING_ROTATION state. Import new key material with ImportKeyMaterial (ImportType NEW_KEY_MATERIAL) before rotating on demand.", keyARN(*k))
}

// RotationEntry is one ListKeyRotations row.
type RotationEntry struct {
	KeyARN          string
	MaterialID      []byte
	Date            time.Time
	Type            string
	State           string // CURRENT | NON_CURRENT | PENDING_ROTATION
	ImportState     string
	ExpirationModel string
	ValidTo         time.Time
	Description     string
}

// ListKeyRotations lists completed rotations, oldest first; with
// includeAll (ALL_KEY_MATERIAL) also the initial material, and each entry
// says whether it is current.
func (s *Service) ListKeyRotations(ctx context.Context, c Request, keyID string, includeAll bool, limit int, marker string) ([]RotationEntry, Page, error) {
	after, err := decodeMarker(marker)
	if err != nil {
		return nil, Page{}, err
	}
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return nil, Page{}, err
	}
	if k.CustomKeyStoreID != "" || k.KeySpec != SpecSymmetric {
		if err := s.rotatable(k); err != nil {
			return nil, Page{}, err
		}
	}
	var all []RotationEntry
	for _, m := range k.Materials {
		// ROTATIONS_ONLY lists what rotations made; ALL_KEY_MATERIAL adds
		// the first material and imported material pending rotation.
		if !includeAll && (m.RotationType == "" || m.Pending) {
			continue
		}
		e := RotationEntry{KeyARN: keyARN(k), MaterialID: m.ID, Type: m.RotationType, State: MaterialNonCurr}
		if m.RotationType != "" {
			e.Date = m.Created
		}
		switch {
		case m.Pending:
			e.State = MaterialPending
		case string(m.ID) == string(k.BackingKeyID):
			e.State = MaterialCurrent
		}
		if k.Origin == OriginExternal {
			e.ImportState, e.ExpirationModel, e.ValidTo, e.Description = "IMPORTED", m.ExpirationModel, m.ValidTo, m.Description
			if len(m.Sealed) == 0 {
				e.ImportState = "PENDING_IMPORT"
			}
		}
		all = append(all, e)
	}
	start := 0
	if after != "" {
		if _, err := fmt.Sscanf(after, "%d", &start); err != nil || start < 0 || start > len(all) {
			return nil, Page{}, errorf(InvalidMarker, "The marker '%s' is not valid.", marker)
		}
	}
	limit = pageLimit(limit)
	rows := all[start:]
	var p Page
	if len(rows) > limit {
		rows = rows[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(fmt.Sprint(start + limit))}
	}
	return rows, p, nil
}

// RotateDueKeys rotates every enabled key whose automatic rotation is due
// and expires imported material whose ValidTo has passed. It returns how
// many keys it changed.
func (s *Service) RotateDueKeys(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.st.KeysDueForRotation(ctx, now)
	if err != nil {
		return 0, internal("RotateDueKeys", err)
	}
	n := 0
	for _, k := range due {
		changed := false
		_, err := s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
			changed = false
			if s.expireImported(k, now) {
				changed = true
			}
			if k.Rotation.Enabled && !k.Rotation.Next.After(now) && k.State == StateEnabled && s.rotatable(*k) == nil {
				if err := s.rotate(k, RotationAutomatic); err != nil {
					return err
				}
				changed = true
			}
			if !changed {
				return errNothingToDo
			}
			return nil
		})
		if err == errNothingToDo {
			continue
		}
		if err != nil {
			s.log.Error("rotation job", "key", keyARN(k), "err", err)
			continue
		}
		n++
	}
	return n, nil
}

var errNothingToDo = &Error{Code: Internal, Message: "nothing to do"}
