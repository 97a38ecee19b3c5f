package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Bucket indexes are monotone and each value lies in its bucket's range.
	prev := -1
	for _, ns := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1 << 62, 1<<63 - 1} {
		i := bucketOf(ns)
		if i < prev || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d (prev %d)", ns, i, prev)
		}
		prev = i
		mid := bucketMid(i)
		if diff := float64(mid) - float64(ns); diff > 0.04*float64(ns)+1 || -diff > 0.04*float64(ns)+1 {
			t.Errorf("value %d reported as %d", ns, mid)
		}
	}
}

func TestHistogramQuantilesMatchSorted(t *testing.T) {
	cases := []struct {
		name string
		gen  func(r *rand.Rand) time.Duration
	}{
		{"uniform ms", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) }},
		{"long tail", func(r *rand.Rand) time.Duration {
			return time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		}},
		{"constant", func(*rand.Rand) time.Duration { return 1500 * time.Microsecond }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var parts [4]histogram
			var all []time.Duration
			for i := 0; i < 20000; i++ {
				d := tc.gen(r)
				parts[i%4].record(d)
				all = append(all, d)
			}
			var h histogram
			for i := range parts {
				h.merge(&parts[i])
			}
			slices.Sort(all)
			if h.total != uint64(len(all)) || h.max != all[len(all)-1] {
				t.Fatalf("total %d max %v, want %d %v", h.total, h.max, len(all), all[len(all)-1])
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 1} {
				exact := all[int(q*float64(len(all)))-1]
				got := h.quantile(q)
				if rel := (float64(got) - float64(exact)) / float64(exact); rel > 0.04 || rel < -0.04 {
					t.Errorf("q%.2f = %v, exact %v", q, got, exact)
				}
			}
		})
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram quantile != 0")
	}
}
