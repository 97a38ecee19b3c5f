package kms

import (
	"context"
	"time"
)

// DeleteDueKeys deletes every key whose deletion date has passed: material
// first (best effort in a custom key store, as AWS), then the record and its
// aliases. It returns how many keys were deleted.
func (s *Service) DeleteDueKeys(ctx context.Context) (int, error) {
	due, err := s.st.KeysDueForDeletion(ctx, s.now())
	if err != nil {
		return 0, internal("DeleteDueKeys", err)
	}
	n := 0
	for _, k := range due {
		if k.MultiRegion != nil {
			err := s.deleteMultiRegion(ctx, k)
			if err == errNothingToDo {
				continue
			}
			if err != nil {
				s.log.Error("deleting due key", "key", keyARN(k), "err", err)
				continue
			}
			s.log.Info("deleted multi-Region key after its waiting period", "key", keyARN(k))
			n++
			continue
		}
		if k.CustomKeyStoreID != "" {
			s.cks.destroyKeyMaterial(ctx, k)
		}
		if err := s.st.DeleteKey(ctx, k.AccountID, k.Region, k.ID); err != nil {
			s.log.Error("deleting due key", "key", keyARN(k), "err", err)
			continue
		}
		s.cacheKeyDrop(k.AccountID, k.Region, k.ID)
		s.soft.Forget(k.ID)
		s.log.Info("deleted key after its waiting period", "key", keyARN(k))
		n++
	}
	return n, nil
}

// RunDeletion runs the key lifecycle jobs every interval until ctx ends:
// DeleteDueKeys, then RotateDueKeys (automatic rotation and the expiry of
// imported key material).
func (s *Service) RunDeletion(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.DeleteDueKeys(ctx); err != nil {
			s.log.Error("deletion job", "err", err)
		}
		if _, err := s.RotateDueKeys(ctx); err != nil {
			s.log.Error("rotation job", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
