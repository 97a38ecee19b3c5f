package metrics

import (
	"testing"
	"time"
)

// BenchmarkObserveStore is what the store latency metric adds to each store
// call (besides two time.Now): compare with a store call's own latency
// (tens of microseconds for SQLite).
func BenchmarkObserveStore(b *testing.B) {
	m := New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveStore("GetKey", 20*time.Microsecond, "")
		}
	})
}
