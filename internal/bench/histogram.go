package bench

import (
	"math/bits"
	"time"
)

// histogram records latencies in log-linear buckets (HDR-style): exact below
// 64 ns, then 32 sub-buckets per power of two, so any recorded value is
// reported within about 3% of itself, in constant memory (about 15 KiB).
// It is not safe for concurrent use: each worker owns one, merged at the end.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
	max    time.Duration
}

const (
	histLinear  = 64 // values below this are counted exactly
	histSub     = 32 // sub-buckets per power of two above histLinear
	histBuckets = histLinear + (64-6)*histSub
)

func bucketOf(ns uint64) int {
	if ns < histLinear {
		return int(ns)
	}
	e := bits.Len64(ns) - 6 // ns>>e is in [32, 63]
	return histLinear + (e-1)*histSub + int(ns>>e) - histSub
}

// bucketMid is a representative value (the middle) of bucket i.
func bucketMid(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	e := (i-histLinear)/histSub + 1
	m := uint64((i-histLinear)%histSub + histSub)
	return m<<e + (uint64(1)<<e)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the latency at or below which a fraction q of the samples
// fall (q in (0,1]); 0 when empty. Never more than the exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketMid(i))
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}
