package kms

import (
	"context"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Key last usage (GetKeyLastUsage): the last successful cryptographic
// operation per key, recorded in memory by this server since it started.
// TrackingStartDate says so: it is the later of the key's creation and the
// server's start, which is exactly what AWS's field means ("the date from
// which KMS began recording cryptographic activity for this key").

// trackedOps are the operations the model's KeyLastUsageTrackingOperation lists.
var trackedOps = map[string]bool{"Decrypt": true, "DeriveSharedSecret": true, "Encrypt": true, "GenerateDataKey": true,
	"GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true, "GenerateDataKeyWithoutPlaintext": true,
	"GenerateMac": true, "ReEncrypt": true, "Sign": true, "Verify": true, "VerifyMac": true}

// KeyUsage is one recorded use.
type KeyUsage struct {
	Operation string
	Time      time.Time
	RequestID string
}

type usageTracker struct {
	started time.Time
	mu      sync.Mutex
	last    map[string]KeyUsage // account/key id -> last use
}

func (s *Service) recordUse(ctx context.Context, c Request, k store.Key) {
	op := c.Operation
	if !trackedOps[op] {
		return
	}
	s.usage.mu.Lock()
	if s.usage.last == nil {
		s.usage.last = make(map[string]KeyUsage)
	}
	s.usage.last[cacheKey(k.AccountID, k.Region, k.ID)] = KeyUsage{Operation: op, Time: s.now().UTC(), RequestID: c.RequestID}
	s.usage.mu.Unlock()
}

// LastUsage is GetKeyLastUsage's result.
type LastUsage struct {
	KeyARN            string
	Last              *KeyUsage
	TrackingStartDate time.Time
	KeyCreationDate   time.Time
}

// GetKeyLastUsage reports the key's last successful cryptographic use.
func (s *Service) GetKeyLastUsage(ctx context.Context, c Request, keyID string) (LastUsage, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{crossAccount: true})
	if err != nil {
		return LastUsage{}, err
	}
	out := LastUsage{KeyARN: keyARN(k), KeyCreationDate: k.CreationDate, TrackingStartDate: k.CreationDate}
	if s.usage.started.After(out.TrackingStartDate) {
		out.TrackingStartDate = s.usage.started
	}
	s.usage.mu.Lock()
	if u, ok := s.usage.last[cacheKey(k.AccountID, k.Region, k.ID)]; ok {
		out.Last = &u
	}
	s.usage.mu.Unlock()
	return out, nil
}
