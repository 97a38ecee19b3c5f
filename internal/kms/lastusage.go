package kms

import (
	"context"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Key last usage (GetKeyLastUsage): the last successful cryptographic
// operation per key, kept in the store so that every replica answers the
// same and a restart loses nothing but the last moments.
//
// The hot path only updates a map in memory. Uses are written to the store
// in one batch at most once per usageFlushInterval (whatever the number of
// keys and requests), by a timer armed by the first use after a flush.
// GetKeyLastUsage reads the store and prefers this server's own unwritten
// use when it is later, so a client sees its own call at once; other
// replicas see it within the interval. A kill -9 loses at most the uses of
// the last interval. TrackingStartDate is the later of the key's creation
// and the moment the store began recording (its migration).

// usageFlushInterval bounds how often recorded uses are written.
const usageFlushInterval = time.Second

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
	interval time.Duration // 0: usageFlushInterval (tests set it)
	mu       sync.Mutex
	pending  map[string]store.KeyUsage // account/key id -> last use not yet written
	armed    bool                      // a flush is scheduled
	flushMu  sync.Mutex                // one flush writes at a time
}

func (s *Service) recordUse(ctx context.Context, c Request, k store.Key) {
	op := c.Operation
	if !trackedOps[op] {
		return
	}
	u := store.KeyUsage{AccountID: k.AccountID, Region: k.Region, KeyID: k.ID, Operation: op, RequestID: c.RequestID, Time: s.now().UTC()}
	s.usage.mu.Lock()
	if s.usage.pending == nil {
		s.usage.pending = make(map[string]store.KeyUsage)
	}
	s.usage.pending[cacheKey(k.AccountID, k.Region, k.ID)] = u
	arm := !s.usage.armed
	s.usage.armed = true
	s.usage.mu.Unlock()
	if arm {
		d := s.usage.interval
		if d == 0 {
			d = usageFlushInterval
		}
		time.AfterFunc(d, func() {
			if err := s.FlushKeyUsage(s.bg); err != nil {
				s.log.Error("recording key usage", "err", err)
			}
		})
	}
}

// FlushKeyUsage writes the uses recorded since the last flush to the store
// (Close calls it; tests call it instead of waiting). Uses that fail to be
// written are kept for the next flush unless a later use replaced them.
func (s *Service) FlushKeyUsage(ctx context.Context) error {
	s.usage.flushMu.Lock()
	defer s.usage.flushMu.Unlock()
	s.usage.mu.Lock()
	batch := s.usage.pending
	s.usage.pending, s.usage.armed = nil, false
	s.usage.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	uses := make([]store.KeyUsage, 0, len(batch))
	for _, u := range batch {
		uses = append(uses, u)
	}
	err := s.st.RecordKeyUsage(context.WithoutCancel(ctx), uses)
	if err != nil {
		s.usage.mu.Lock()
		if s.usage.pending == nil {
			s.usage.pending = make(map[string]store.KeyUsage)
		}
		for ck, u := range batch {
			if p, ok := s.usage.pending[ck]; !ok || p.Time.Before(u.Time) {
				s.usage.pending[ck] = u
			}
		}
		s.usage.mu.Unlock()
	}
	return err
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
	stored, since, err := s.st.GetKeyUsage(ctx, k.AccountID, k.Region, k.ID)
	if err != nil {
		return LastUsage{}, internal("GetKeyLastUsage", err)
	}
	out := LastUsage{KeyARN: keyARN(k), KeyCreationDate: k.CreationDate, TrackingStartDate: k.CreationDate}
	if since.After(out.TrackingStartDate) {
		out.TrackingStartDate = since
	}
	s.usage.mu.Lock()
	if p, ok := s.usage.pending[cacheKey(k.AccountID, k.Region, k.ID)]; ok && p.Time.After(stored.Time) {
		stored = p
	}
	s.usage.mu.Unlock()
	if !stored.Time.IsZero() {
		out.Last = &KeyUsage{Operation: stored.Operation, Time: stored.Time, RequestID: stored.RequestID}
	}
	return out, nil
}
