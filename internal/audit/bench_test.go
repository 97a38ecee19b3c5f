package audit

import (
	"path/filepath"
	"testing"
)

// The audit cost per request, for the lead to quote. Run:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/audit/
//
// Encode is the model walk and JSON encoding of one Encrypt event (done on
// the request goroutine). Writer/* is appending one ~900-byte event:
// GroupCommit returns before the fsync (durable within one fsync window),
// GroupCommit+Sync waits for the shared fsync (durable before the response),
// SyncEach fsyncs every event. Parallel benchmarks stand for concurrent
// requests (-cpu sets how many).

func encryptRecord(b *testing.B) *Record {
	for _, tc := range cases(b) {
		if tc.name == "encrypt" {
			r := tc.rec
			return &r
		}
	}
	b.Fatal("no encrypt case")
	return nil
}

func BenchmarkEncode(b *testing.B) {
	e := newTestEncoder(b)
	r := encryptRecord(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkWriter(b *testing.B) {
	e := newTestEncoder(b)
	line, _ := e.Marshal(encryptRecord(b))
	for _, bc := range []struct {
		name string
		mode Mode
		wait bool
	}{
		{"GroupCommit", GroupCommit, false},
		{"GroupCommit+Sync", GroupCommit, true},
		{"SyncEach", SyncEach, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w, err := Open(filepath.Join(b.TempDir(), "a.jsonl"), WriterOptions{Mode: bc.mode})
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(4) // 4×GOMAXPROCS concurrent requests
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Write(line); err != nil {
						b.Fatal(err)
					}
					if bc.wait {
						if err := w.Sync(); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			// Everything accepted must be on disk before the clock stops.
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkHook is the whole per-request cost as cli.AuditHook pays it:
// encode plus a GroupCommit write, including the final flush.
func BenchmarkHook(b *testing.B) {
	e := newTestEncoder(b)
	r := encryptRecord(b)
	w, err := Open(filepath.Join(b.TempDir(), "a.jsonl"), WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			line, err := e.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Write(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
