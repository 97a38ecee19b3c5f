package sqlite

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// keyName is a key's primary key.
type keyName struct{ AccountID, Region, ID string }

var large struct {
	once sync.Once
	db   *DB
	keys []keyName
	err  error
}

// largeDB opens the database named by KEYHOLD_BENCH_DB (a copy of a data
// directory's keyhold.db with many keys, such as scripts/bench-scale.sh
// keeps; it is migrated in place) once for all benchmarks, and returns its
// keys.
func largeDB(b *testing.B) (*DB, []keyName) {
	path := os.Getenv("KEYHOLD_BENCH_DB")
	if path == "" {
		b.Skip("KEYHOLD_BENCH_DB (a copy of a keyhold.db with many keys) is not set")
	}
	large.once.Do(func() {
		ctx := context.Background()
		db, err := Open(ctx, path)
		if err != nil {
			large.err = err
			return
		}
		large.db = db
		rows, err := db.db.QueryContext(ctx, "SELECT account_id, region, id FROM keys")
		if err != nil {
			large.err = err
			return
		}
		defer rows.Close()
		for rows.Next() {
			var k keyName
			if err := rows.Scan(&k.AccountID, &k.Region, &k.ID); err != nil {
				large.err = err
				return
			}
			large.keys = append(large.keys, k)
		}
		if large.err = rows.Err(); large.err == nil && len(large.keys) == 0 {
			large.err = errors.New("no keys")
		}
	})
	if large.err != nil {
		b.Fatal(large.err)
	}
	return large.db, large.keys
}

// cpuPerOp reports the process's CPU time (user and system) per operation:
// on a shared machine it varies less than the wall clock.
func cpuPerOp(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/op") }
}

// BenchmarkGetKeyLarge: GetKey of random keys of a large database, the
// read behind a DescribeKey or Encrypt whose key is not cached.
func BenchmarkGetKeyLarge(b *testing.B) {
	db, keys := largeDB(b)
	// A request's context: it can be canceled.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	done := cpuPerOp(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := keys[rand.IntN(len(keys))]
			if _, err := db.GetKey(ctx, k.AccountID, k.Region, k.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	done()
}

// BenchmarkRecordKeyUsageLarge: flushes of 3,000 uses of random keys of a
// large database (what Encrypt at about 3,000/s over them writes each
// second).
func BenchmarkRecordKeyUsageLarge(b *testing.B) {
	db, keys := largeDB(b)
	ctx := context.Background()
	at := time.Now()
	uses := make([]store.KeyUsage, 0, 3000)
	b.ReportAllocs()
	b.ResetTimer()
	done := cpuPerOp(b)
	for b.Loop() {
		uses = uses[:0]
		at = at.Add(time.Second)
		for range 3000 {
			k := keys[rand.IntN(len(keys))]
			uses = append(uses, store.KeyUsage{AccountID: k.AccountID, Region: k.Region, KeyID: k.ID, Operation: "Encrypt",
				RequestID: "0b5e8f7c-94a4-4a0e-9d5e-5f3c2a1b0c9d", Time: at})
		}
		if err := db.RecordKeyUsage(ctx, uses); err != nil {
			b.Fatal(err)
		}
	}
	done()
}
