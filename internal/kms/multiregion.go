package kms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/region"
	"github.com/keyhold/keyhold/internal/store"
)

// Multi-Region keys, as AWS documents them: one key id (mrk-...) with a
// row per Region, a primary and its replicas. The rows share key material,
// key spec, usage, origin and the automatic rotation schedule (the
// primary's changes reach the replicas in the same transaction); policy,
// aliases, grants, tags, description and key state are each Region's own.
// Every row holds the whole configuration (store.MultiRegion), changed on
// all rows at once.

// Multi-Region key types as AWS spells them.
const (
	MultiRegionPrimary = "PRIMARY"
	MultiRegionReplica = "REPLICA"
)

// MultiRegionKey is one key of a multi-Region key's configuration.
type MultiRegionKey struct{ ARN, Region string }

// MultiRegionConfiguration is what DescribeKey reports of a multi-Region
// key: this key's type, the primary and every replica.
type MultiRegionConfiguration struct {
	KeyType  string
	Primary  MultiRegionKey
	Replicas []MultiRegionKey
}

// multiRegionKeyType is PRIMARY or REPLICA for a multi-Region key's row.
func multiRegionKeyType(k store.Key) string {
	if k.MultiRegion == nil {
		return ""
	}
	if k.MultiRegion.PrimaryRegion == k.Region {
		return MultiRegionPrimary
	}
	return MultiRegionReplica
}

func isPrimaryWithReplicas(k store.Key) bool {
	return multiRegionKeyType(k) == MultiRegionPrimary && len(k.MultiRegion.ReplicaRegions) > 0
}

func multiRegionConfiguration(k store.Key) *MultiRegionConfiguration {
	if k.MultiRegion == nil {
		return nil
	}
	m := &MultiRegionConfiguration{KeyType: multiRegionKeyType(k),
		Primary: MultiRegionKey{ARN: keyARNIn(k.MultiRegion.PrimaryRegion, k.AccountID, k.ID), Region: k.MultiRegion.PrimaryRegion}}
	for _, r := range k.MultiRegion.ReplicaRegions {
		m.Replicas = append(m.Replicas, MultiRegionKey{ARN: keyARNIn(r, k.AccountID, k.ID), Region: r})
	}
	return m
}

// newMultiRegionKeyID makes an mrk- id: "mrk-" and 32 hex digits.
func newMultiRegionKeyID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return blob.MultiRegionPrefix + hex.EncodeToString(b[:]), nil
}

func isMultiRegionID(id string) bool {
	_, mrk, ok := blob.ParseKeyID(id)
	return ok && mrk
}

func notMultiRegion(k store.Key) error {
	return errorf(UnsupportedOperation, "%s is not a multi-Region key.", keyARN(k))
}

func notPrimary(k store.Key) error {
	return errorf(UnsupportedOperation, "%s is not a multi-Region primary key. The primary key is %s.", keyARN(k),
		keyARNIn(k.MultiRegion.PrimaryRegion, k.AccountID, k.ID))
}

func checkRegionName(field, r string) error {
	if !region.Valid(r) {
		return errorf(Validation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$", r, field)
	}
	return nil
}

// syncShared copies the properties a multi-Region key's rows share from
// the primary p to replica r: rotation schedule and (for material KMS
// generated) every key material. Imported material is each Region's own
// import; a replica learns the primary's materials' ids and digests
// (without the material) so that only the same material imports.
func syncShared(p store.Key, r *store.Key) {
	r.KeySpec, r.KeyUsage, r.Origin = p.KeySpec, p.KeyUsage, p.Origin
	r.Rotation = p.Rotation
	if p.Origin != OriginExternal {
		r.BackingKeyID, r.SealedMaterial = p.BackingKeyID, p.SealedMaterial
		r.Materials = slices.Clone(p.Materials)
		return
	}
	for _, m := range p.Materials {
		i := slices.IndexFunc(r.Materials, func(x store.KeyMaterial) bool { return string(x.ID) == string(m.ID) })
		if i < 0 {
			r.Materials = append(r.Materials, store.KeyMaterial{ID: m.ID, Created: m.Created, RotationType: m.RotationType, Digest: m.Digest, Pending: m.Pending})
			continue
		}
		r.Materials[i].Created, r.Materials[i].RotationType, r.Materials[i].Pending = m.Created, m.RotationType, m.Pending
	}
	// The primary's current material is the replica's (RotateKeyOnDemand
	// on the primary checks that every replica holds it first).
	r.BackingKeyID, r.SealedMaterial = p.BackingKeyID, nil
	for _, m := range r.Materials {
		if string(m.ID) == string(p.BackingKeyID) {
			r.SealedMaterial = m.Sealed
		}
	}
}

// replicasHoldPending: on-demand rotation of an imported multi-Region
// primary needs the new material imported into every replica first, as
// AWS documents.
func (s *Service) replicasHoldPending(ctx context.Context, k store.Key) error {
	if !isPrimaryWithReplicas(k) || k.Origin != OriginExternal {
		return nil
	}
	rows, err := s.st.ListKeyRegions(ctx, k.AccountID, k.ID)
	if err != nil {
		return internal("RotateKeyOnDemand", err)
	}
	for _, p := range k.Materials {
		if !p.Pending {
			continue
		}
		for _, r := range rows {
			if r.Region == k.Region {
				continue
			}
			if !slices.ContainsFunc(r.Materials, func(m store.KeyMaterial) bool { return string(m.ID) == string(p.ID) && len(m.Sealed) > 0 }) {
				return errorf(InvalidState, "Import the key material %s into the replica key %s before rotating its multi-Region primary key.", FormatMaterialID(p.ID), keyARN(r))
			}
		}
	}
	return nil
}

// updateKeySet runs fn on every Region's row of a multi-Region key, read in
// one transaction, and writes them back (and creates the rows fn appends)
// in that transaction. fn may change rows and append new ones; it must not
// drop or reorder them. A concurrent writer makes it start over.
func (s *Service) updateKeySet(ctx context.Context, account, id string, fn func(rows []store.Key) ([]store.Key, error)) ([]store.Key, error) {
	for attempt := 0; attempt < 16; attempt++ {
		var out []store.Key
		err := s.st.Tx(ctx, func(tx store.Store) error {
			rows, err := tx.ListKeyRegions(ctx, account, id)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return store.ErrNotFound
			}
			n := len(rows)
			next, err := fn(rows)
			if err != nil {
				return err
			}
			for i := range next {
				if i < n {
					v, err := tx.UpdateKey(ctx, next[i])
					if err != nil {
						return err
					}
					next[i].Version = v
					continue
				}
				if err := tx.CreateKey(ctx, next[i]); err != nil {
					return err
				}
				next[i].Version = 1
			}
			out = next
			return nil
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			s.cacheKeyDropAll(account, id)
			if errors.Is(err, errStaleRead) {
				return nil, err
			}
			if _, ok := AsError(err); ok {
				return nil, err
			}
			return nil, s.storeErr("updateKeySet", err, id)
		}
		for _, k := range out {
			s.cacheKeyPut(k)
		}
		return out, nil
	}
	return nil, internal("updateKeySet", errors.New("too many concurrent updates"))
}

// writeMultiRegion stores k, the primary of a multi-Region key with
// replicas read at k.Version, and brings the replicas' shared properties
// in line with it, in one transaction (mutateKey's path for such keys).
func (s *Service) writeMultiRegion(ctx context.Context, k store.Key) (store.Key, error) {
	rows, err := s.updateKeySet(ctx, k.AccountID, k.ID, func(rows []store.Key) ([]store.Key, error) {
		i := slices.IndexFunc(rows, func(r store.Key) bool { return r.Region == k.Region })
		if i < 0 {
			return nil, store.ErrNotFound
		}
		if rows[i].Version != k.Version || !isPrimaryWithReplicas(rows[i]) {
			return nil, errStaleRead
		}
		rows[i] = k
		for j := range rows {
			if j != i {
				syncShared(k, &rows[j])
			}
		}
		return rows, nil
	})
	if err != nil {
		return k, err
	}
	for _, r := range rows {
		if r.Region == k.Region {
			return r, nil
		}
	}
	return k, internal("writeMultiRegion", errors.New("the primary's row went missing"))
}

// errStaleRead: the row a read-modify-write read has changed since; the
// caller reads again.
var errStaleRead = errors.New("kms: stale read of a multi-Region key")

// ReplicateKeyInput holds ReplicateKey's parameters.
type ReplicateKeyInput struct {
	KeyID                          string
	ReplicaRegion                  string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
	Description                    string
	Tags                           []store.Tag
}

// ReplicateKeyOutput is ReplicateKey's result.
type ReplicateKeyOutput struct {
	Metadata KeyMetadata
	Policy   string
	Tags     []store.Tag
}

// ReplicateKey makes a replica of a multi-Region primary key in another
// Region. The call is made in the primary's Region (kms:ReplicateKey on the
// primary, kms:CreateKey and with Tags kms:TagResource in the replica
// Region). The replica is complete when the call returns; the answer says
// Creating, the transient state AWS reports, and DescribeKey then shows
// Enabled (PendingImport for imported material, which each Region imports
// itself).
func (s *Service) ReplicateKey(ctx context.Context, c Request, in ReplicateKeyInput) (ReplicateKeyOutput, error) {
	if err := checkRegionName("replicaRegion", in.ReplicaRegion); err != nil {
		return ReplicateKeyOutput{}, err
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{ctx: func(pc policy.Context) { pc.Set(policy.KeyReplicaRegion, in.ReplicaRegion) }})
	if err != nil {
		return ReplicateKeyOutput{}, err
	}
	if err := s.checkReplicable(k, in.ReplicaRegion); err != nil {
		return ReplicateKeyOutput{}, err
	}
	if err := validateTags(in.Tags); err != nil {
		return ReplicateKeyOutput{}, err
	}
	if len(in.Tags) > maxTags {
		return ReplicateKeyOutput{}, errorf(Tag, "A key can have at most %d tags.", maxTags)
	}
	// The replica Region's side: creating a key there, tagging it.
	rc := c
	rc.Region = in.ReplicaRegion
	if err := s.authorizeAction(ctx, "kms:CreateKey", rc, nil, func(pc policy.Context) {
		pc.Set(policy.KeyKeySpec, k.KeySpec)
		pc.Set(policy.KeyCustomerMasterKeySpec, k.KeySpec)
		pc.Set(policy.KeyKeyUsage, k.KeyUsage)
		pc.Set(policy.KeyKeyOrigin, k.Origin)
		pc.SetBool(policy.KeyMultiRegion, true)
		pc.Set(policy.KeyMultiRegionKeyType, MultiRegionReplica)
		setRequestTags(pc, in.Tags)
	}); err != nil {
		return ReplicateKeyOutput{}, err
	}
	if len(in.Tags) > 0 {
		if err := s.authorizeAction(ctx, "kms:TagResource", rc, nil, func(pc policy.Context) { setRequestTags(pc, in.Tags) }); err != nil {
			return ReplicateKeyOutput{}, err
		}
	}
	replicaARN := keyARNIn(in.ReplicaRegion, k.AccountID, k.ID)
	keyPolicy := DefaultPolicy(k.AccountID)
	if in.Policy != nil {
		if err := s.checkKeyPolicy(ctx, rc, *in.Policy, in.BypassPolicyLockoutSafetyCheck, k.AccountID, replicaARN); err != nil {
			return ReplicateKeyOutput{}, err
		}
		keyPolicy = *in.Policy
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	rows, err := s.updateKeySet(ctx, k.AccountID, k.ID, func(rows []store.Key) ([]store.Key, error) {
		i := slices.IndexFunc(rows, func(r store.Key) bool { return r.Region == k.Region })
		if i < 0 {
			return nil, store.ErrNotFound
		}
		p := rows[i]
		if err := s.checkReplicable(p, in.ReplicaRegion); err != nil {
			return nil, err
		}
		if slices.ContainsFunc(rows, func(r store.Key) bool { return r.Region == in.ReplicaRegion }) {
			return nil, alreadyReplicated(p, in.ReplicaRegion)
		}
		r := store.Key{AccountID: p.AccountID, Region: in.ReplicaRegion, ID: p.ID, CreationDate: now,
			Description: in.Description, Policy: keyPolicy, Tags: copyTags(in.Tags), State: StateEnabled}
		syncShared(p, &r)
		if p.Origin == OriginExternal {
			r.State = StatePendingImport
		}
		mr := &store.MultiRegion{PrimaryRegion: p.Region, ReplicaRegions: append(slices.Clone(p.MultiRegion.ReplicaRegions), in.ReplicaRegion)}
		slices.Sort(mr.ReplicaRegions)
		rows = append(rows, r)
		for j := range rows {
			c := *mr
			c.ReplicaRegions = slices.Clone(mr.ReplicaRegions)
			rows[j].MultiRegion = &c
		}
		return rows, nil
	})
	if err != nil {
		return ReplicateKeyOutput{}, err
	}
	replica := rows[len(rows)-1]
	m := s.metadata(replica)
	m.KeyState, m.Enabled = StateCreating, false
	return ReplicateKeyOutput{Metadata: m, Policy: replica.Policy, Tags: copyTags(replica.Tags)}, nil
}

func alreadyReplicated(k store.Key, r string) error {
	return errorf(AlreadyExists, "The multi-Region key %s already exists in Region %s.", keyARNIn(r, k.AccountID, k.ID), r)
}

// checkUsablePrimary: what ReplicateKey and UpdatePrimaryRegion both require
// of the key named: a multi-Region primary, neither pending deletion nor
// disabled (checked in that order).
func (s *Service) checkUsablePrimary(k store.Key) error {
	switch {
	case k.MultiRegion == nil:
		return notMultiRegion(k)
	case multiRegionKeyType(k) != MultiRegionPrimary:
		return notPrimary(k)
	case pendingDeletionState(k.State):
		return s.pendingDeletion(k)
	case k.State == StateDisabled:
		return errorf(Disabled, "%s is disabled.", keyARN(k))
	}
	return nil
}

// checkReplicable: only a multi-Region primary key that is not pending
// deletion (or disabled) is replicated, into a Region without a key of its
// set.
func (s *Service) checkReplicable(k store.Key, to string) error {
	if err := s.checkUsablePrimary(k); err != nil {
		return err
	}
	switch {
	case to == k.Region || slices.Contains(k.MultiRegion.ReplicaRegions, to):
		return alreadyReplicated(k, to)
	}
	return nil
}

// UpdatePrimaryRegion makes the replica in region the primary key of a
// multi-Region key and the current primary a replica, on every row at
// once. It is called on the current primary (kms:UpdatePrimaryRegion on it
// and on the replica). The change is complete when it returns (no
// transient Updating state).
func (s *Service) UpdatePrimaryRegion(ctx context.Context, c Request, keyID, to string) error {
	if err := checkRegionName("primaryRegion", to); err != nil {
		return err
	}
	withRegion := func(pc policy.Context) { pc.Set(policy.KeyPrimaryRegion, to) }
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{ctx: withRegion})
	if err != nil {
		return err
	}
	if err := s.checkPrimaryChange(k, to); err != nil {
		return err
	}
	rc := c
	rc.Region = to
	replica, err := s.getKey(ctx, k.AccountID, to, k.ID)
	if err != nil {
		return s.storeErr("UpdatePrimaryRegion", err, keyARNIn(to, k.AccountID, k.ID))
	}
	if err := s.authorizeAction(ctx, c.Action, rc, &replica, withRegion); err != nil {
		return err
	}
	_, err = s.updateKeySet(ctx, k.AccountID, k.ID, func(rows []store.Key) ([]store.Key, error) {
		var primary, next *store.Key
		for i := range rows {
			switch rows[i].Region {
			case k.Region:
				primary = &rows[i]
			case to:
				next = &rows[i]
			}
		}
		if primary == nil {
			return nil, store.ErrNotFound
		}
		if next == nil {
			return nil, errorf(NotFound, "Key '%s' does not exist", keyARNIn(to, k.AccountID, k.ID))
		}
		if err := s.checkPrimaryChange(*primary, to); err != nil {
			return nil, err
		}
		if err := s.checkNewPrimary(*next); err != nil {
			return nil, err
		}
		var replicas []string
		for _, r := range rows {
			if r.Region != to {
				replicas = append(replicas, r.Region)
			}
		}
		slices.Sort(replicas)
		for i := range rows {
			rows[i].MultiRegion = &store.MultiRegion{PrimaryRegion: to, ReplicaRegions: slices.Clone(replicas)}
		}
		return rows, nil
	})
	return err
}

func (s *Service) checkPrimaryChange(k store.Key, to string) error {
	if err := s.checkUsablePrimary(k); err != nil {
		return err
	}
	switch {
	case to == k.Region:
		return errorf(UnsupportedOperation, "%s is already the primary key of its multi-Region key.", keyARN(k))
	case !slices.Contains(k.MultiRegion.ReplicaRegions, to):
		return errorf(NotFound, "Key '%s' does not exist", keyARNIn(to, k.AccountID, k.ID))
	}
	return nil
}

func (s *Service) checkNewPrimary(r store.Key) error {
	switch {
	case pendingDeletionState(r.State):
		return s.pendingDeletion(r)
	case r.State == StateDisabled:
		return errorf(Disabled, "%s is disabled.", keyARN(r))
	}
	return nil
}

// replicaRotationRefused: a replica's rotation is its primary's.
func replicaRotationRefused(k store.Key) error {
	if multiRegionKeyType(k) != MultiRegionReplica {
		return nil
	}
	return errorf(UnsupportedOperation, "%s is a multi-Region replica key. Rotation is a shared property of multi-Region keys: change it on the primary key %s.",
		keyARN(k), keyARNIn(k.MultiRegion.PrimaryRegion, k.AccountID, k.ID))
}

// deleteMultiRegion deletes one Region's row of a multi-Region key whose
// waiting period ended, and takes it out of the other rows'
// configuration. A primary in PendingReplicaDeletion whose last replica
// this was starts its own waiting period (PendingDeletion).
func (s *Service) deleteMultiRegion(ctx context.Context, k store.Key) error {
	err := s.st.Tx(ctx, func(tx store.Store) error {
		rows, err := tx.ListKeyRegions(ctx, k.AccountID, k.ID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(rows, func(r store.Key) bool { return r.Region == k.Region })
		if i < 0 {
			return store.ErrNotFound
		}
		gone := rows[i]
		if gone.State != StatePendingDeletion || gone.DeletionDate.After(s.now()) {
			return errNothingToDo // cancelled or rescheduled meanwhile
		}
		if isPrimaryWithReplicas(gone) {
			return errNothingToDo // cannot happen: such a primary waits in PendingReplicaDeletion
		}
		if err := tx.DeleteKey(ctx, k.AccountID, k.Region, k.ID); err != nil {
			return err
		}
		for j, r := range rows {
			if j == i {
				continue
			}
			r.MultiRegion.ReplicaRegions = slices.DeleteFunc(slices.Clone(r.MultiRegion.ReplicaRegions), func(x string) bool { return x == k.Region })
			if isPrimaryWithReplicas(r) || r.State != StatePendingReplicaDeletion || multiRegionKeyType(r) != MultiRegionPrimary {
				// still waiting for other replicas, or not waiting at all
			} else {
				r.State = StatePendingDeletion
				r.DeletionDate = s.now().UTC().Add(time.Duration(r.PendingWindowInDays) * day).Truncate(time.Second)
			}
			if _, err := tx.UpdateKey(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	s.cacheKeyDropAll(k.AccountID, k.ID)
	return err
}
