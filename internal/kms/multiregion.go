package kms

import "context"

// Multi-Region keys are not built yet: CreateKey refuses MultiRegion=true
// (UnsupportedOperationException), so every key keyhold holds is a
// single-Region key, and ReplicateKey and UpdatePrimaryRegion answer what
// AWS answers for a single-Region key.

func (s *Service) notMultiRegion(ctx context.Context, c Request, keyID string) error {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return err
	}
	if k.State == StatePendingDeletion {
		return s.pendingDeletion(k)
	}
	return errorf(UnsupportedOperation, "%s is not a multi-Region key.", s.keyARN(k.AccountID, k.ID))
}

// ReplicateKey replicates a multi-Region primary key into another Region.
func (s *Service) ReplicateKey(ctx context.Context, c Request, keyID, region string) error {
	return s.notMultiRegion(ctx, c, keyID)
}

// UpdatePrimaryRegion makes a replica of a multi-Region key the primary.
func (s *Service) UpdatePrimaryRegion(ctx context.Context, c Request, keyID, region string) error {
	return s.notMultiRegion(ctx, c, keyID)
}
