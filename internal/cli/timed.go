package cli

import (
	"context"
	"time"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/metrics"
)

// timedDriver is a key store driver whose backend calls are timed for
// keyhold_backend_call_duration_seconds{backend,call} and counted in
// keyhold_backend_call_errors_total when they fail. It decorates the
// driver instead of changing it; withCapabilities keeps the optional
// interfaces the domain finds by type assertion.
type timedDriver struct {
	keystore.Driver
	m       *metrics.Metrics
	backend string // "hsm" or "xks"
}

func (t *timedDriver) observe(call string, start time.Time, err error) {
	t.m.ObserveBackend(t.backend, call, time.Since(start), err)
}

func (t *timedDriver) Encrypt(ctx context.Context, k keystore.KeyRef, call keystore.Call, plaintext, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := t.Driver.Encrypt(ctx, k, call, plaintext, aad)
	t.observe("encrypt", start, err)
	return out, err
}

func (t *timedDriver) Decrypt(ctx context.Context, k keystore.KeyRef, call keystore.Call, payload, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := t.Driver.Decrypt(ctx, k, call, payload, aad)
	t.observe("decrypt", start, err)
	return out, err
}

func (t *timedDriver) Connect(ctx context.Context, s keystore.Store, save keystore.SaveSecret) error {
	start := time.Now()
	err := t.Driver.Connect(ctx, s, save)
	t.observe("connect", start, err)
	return err
}

func (t *timedDriver) CreateKey(ctx context.Context, s keystore.Store, k keystore.KeyRef, call keystore.Call) (keystore.Material, error) {
	start := time.Now()
	m, err := t.Driver.CreateKey(ctx, s, k, call)
	t.observe("create_key", start, err)
	return m, err
}

func (t *timedDriver) Health(ctx context.Context, storeID string) error {
	start := time.Now()
	err := t.Driver.Health(ctx, storeID)
	t.observe("health", start, err)
	return err
}

type timedRandomness struct {
	*timedDriver
	r keystore.Randomness
}

func (t timedRandomness) GenerateRandom(ctx context.Context, storeID string, n int) ([]byte, error) {
	start := time.Now()
	b, err := t.r.GenerateRandom(ctx, storeID, n)
	t.observe("generate_random", start, err)
	return b, err
}

type timedRepeater struct {
	*timedDriver
	keystore.Repeater
}

type timedBoth struct {
	timedRandomness
	keystore.Repeater
}

// timeDriver wraps d (nil m: d itself), keeping its optional capabilities.
func timeDriver(d keystore.Driver, m *metrics.Metrics, backend string) keystore.Driver {
	if m == nil {
		return d
	}
	t := &timedDriver{Driver: d, m: m, backend: backend}
	rn, isRn := d.(keystore.Randomness)
	rp, isRp := d.(keystore.Repeater)
	j, isJ := d.(keystore.Joiner)
	switch {
	case isRn && isRp && isJ:
		return timedAll{timedBoth{timedRandomness{t, rn}, rp}, timedJoiner{t, j}}
	case isRn && isRp:
		return timedBoth{timedRandomness{t, rn}, rp}
	case isRn:
		return timedRandomness{t, rn}
	case isRp:
		return timedRepeater{t, rp}
	}
	return t
}

// timedJoiner times Join as a connect.
type timedJoiner struct {
	t *timedDriver
	j keystore.Joiner
}

func (t timedJoiner) Join(ctx context.Context, s keystore.Store) error {
	start := time.Now()
	err := t.j.Join(ctx, s)
	t.t.observe("connect", start, err)
	return err
}

type timedAll struct {
	timedBoth
	timedJoiner
}
