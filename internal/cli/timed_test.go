package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/metrics"
)

// fakeDriver implements the calls the test makes; the rest of
// keystore.Driver is the nil embedded interface.
type fakeDriver struct {
	keystore.Driver
	fail bool
}

func (f fakeDriver) Encrypt(context.Context, keystore.KeyRef, keystore.Call, []byte, []byte) ([]byte, error) {
	if f.fail {
		return nil, errors.New("backend down")
	}
	return []byte("x"), nil
}

type fakeRandom struct{ fakeDriver }

func (fakeRandom) GenerateRandom(context.Context, string, int) ([]byte, error) { return []byte{1}, nil }

func TestTimedDriverKeepsCapabilitiesAndCounts(t *testing.T) {
	m := metrics.New()
	plain := timeDriver(fakeDriver{fail: true}, m, "xks")
	if _, ok := plain.(keystore.Randomness); ok {
		t.Fatal("a driver without GenerateRandom gained it")
	}
	rnd := timeDriver(fakeRandom{}, m, "hsm")
	r, ok := rnd.(keystore.Randomness)
	if !ok {
		t.Fatal("the CloudHSM driver lost GenerateRandom")
	}
	r.GenerateRandom(context.Background(), "cks-1", 1)
	plain.Encrypt(context.Background(), keystore.KeyRef{}, keystore.Call{}, nil, nil)
	rnd.Encrypt(context.Background(), keystore.KeyRef{}, keystore.Call{}, nil, nil)
	want := `
# HELP keyhold_backend_call_errors_total Failed calls to key store backends.
# TYPE keyhold_backend_call_errors_total counter
keyhold_backend_call_errors_total{backend="xks",call="encrypt"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "keyhold_backend_call_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.Registry, "keyhold_backend_call_duration_seconds"); n != 3 {
		t.Fatalf("%d backend latency series, want 3 (xks encrypt, hsm encrypt, hsm generate_random)", n)
	}
}
