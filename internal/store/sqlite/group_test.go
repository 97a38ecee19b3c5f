package sqlite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

func testKey(id string) store.Key {
	return store.Key{AccountID: "111122223333", ID: id, CreationDate: time.Unix(1700000000, 0).UTC(), KeyUsage: "ENCRYPT_DECRYPT",
		KeySpec: "SYMMETRIC_DEFAULT", Origin: "AWS_KMS", State: "Enabled", Policy: "{}", BackingKeyID: []byte{9}, SealedMaterial: []byte{7, 7}}
}

func openTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Concurrent writes share commits; each one's outcome is its own: a
// duplicate fails alone, a rolled-back transaction leaves the writes
// grouped with it in place, and every write that returned nil is stored.
func TestGroupCommitOutcomesAreIndependent(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t)
	for i := 0; i < 20; i++ {
		if err := db.CreateKey(ctx, testKey(fmt.Sprintf("dup%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	var created, dups, rolledBack atomic.Int64
	errs := make(chan error, 1000)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				switch i % 3 {
				case 0: // a fresh key
					if err := db.CreateKey(ctx, testKey(fmt.Sprintf("w%02d-%02d", w, i))); err != nil {
						errs <- err
						return
					}
					created.Add(1)
				case 1: // a duplicate: ErrExists, nothing else changes
					err := db.CreateKey(ctx, testKey(fmt.Sprintf("dup%02d", (w+i)%20)))
					if !errors.Is(err, store.ErrExists) {
						errs <- fmt.Errorf("duplicate: %v, want ErrExists", err)
						return
					}
					dups.Add(1)
				case 2: // a transaction that writes, then fails
					err := db.Tx(ctx, func(tx store.Store) error {
						if err := tx.CreateKey(ctx, testKey(fmt.Sprintf("rb%02d-%02d", w, i))); err != nil {
							return err
						}
						return boom
					})
					if !errors.Is(err, boom) {
						errs <- fmt.Errorf("Tx = %v, want boom", err)
						return
					}
					rolledBack.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := db.db.QueryRow("SELECT count(*) FROM keys WHERE id LIKE 'w%'").Scan(&n); err != nil || int64(n) != created.Load() {
		t.Fatalf("%d fresh keys stored (%v), %d acknowledged", n, err, created.Load())
	}
	if err := db.db.QueryRow("SELECT count(*) FROM keys WHERE id LIKE 'rb%'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d keys of rolled-back transactions stored (%v)", n, err)
	}
	if err := db.db.QueryRow("SELECT count(*) FROM keys WHERE id LIKE 'dup%'").Scan(&n); err != nil || n != 20 {
		t.Fatalf("%d dup keys (%v), want 20", n, err)
	}
	if created.Load() != 16*10 || dups.Load() != 16*10 || rolledBack.Load() != 16*10 {
		t.Fatalf("created %d, duplicates %d, rolled back %d; want 160 each", created.Load(), dups.Load(), rolledBack.Load())
	}
}

func TestGroupCommitCanceledWriteChangesNothing(t *testing.T) {
	db := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 20; i++ { // either path: refused before or at its turn
		if err := db.CreateKey(ctx, testKey(fmt.Sprintf("c%d", i))); !errors.Is(err, context.Canceled) {
			t.Fatalf("CreateKey with a canceled context: %v", err)
		}
	}
	if err := db.Tx(ctx, func(store.Store) error { t.Error("Tx body ran with a canceled context"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Tx with a canceled context: %v", err)
	}
	var n int
	if err := db.db.QueryRow("SELECT count(*) FROM keys").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d keys stored (%v)", n, err)
	}
}

func TestGroupCommitAfterClose(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := db.CreateKey(context.Background(), testKey("late")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

// A write acknowledged (returned nil) survives kill -9 of the process that
// made it, in the middle of a stream of grouped writes. The child process
// (this test binary, re-run) writes keys from 16 goroutines and prints each
// id once CreateKey returned; the parent kills it and reopens the database.
func TestGroupCommitAcknowledgedWritesSurviveKill(t *testing.T) {
	if path := os.Getenv("KEYHOLD_GROUP_KILL_DB"); path != "" {
		groupKillChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "k.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestGroupCommitAcknowledgedWritesSurviveKill$")
	cmd.Env = append(os.Environ(), "KEYHOLD_GROUP_KILL_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, id)
			if len(acked) == 400 {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
	}
	for sc.Scan() { // whatever was acknowledged before the kill landed
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("the writer acknowledged only %d writes before it ended", len(acked))
	}
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range acked {
		if _, err := db.GetKey(context.Background(), "111122223333", "", id); err != nil {
			t.Errorf("acknowledged key %s: %v", id, err)
		}
	}
}

func groupKillChild(path string) {
	db, err := Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%02d-%06d", g, i)
				if err := db.CreateKey(context.Background(), testKey(id)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "acked %s\n", id)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// BenchmarkCreateKeyParallel: concurrent single-key writes, the shape of
// CreateKey under load (each one durable before it returns).
func BenchmarkCreateKeyParallel(b *testing.B) {
	db := openTemp(b)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.CreateKey(context.Background(), testKey(fmt.Sprintf("b%d", n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetKeyRandom: GetKey of random keys among 20,000 (none cached
// by the store), the read behind a DescribeKey or Encrypt whose key is not
// in the domain's cache.
func BenchmarkGetKeyRandom(b *testing.B) {
	db := openTemp(b)
	const n = 20000
	ctx := context.Background()
	err := db.Tx(ctx, func(tx store.Store) error {
		for i := 0; i < n; i++ {
			k := testKey(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
			k.Policy = benchPolicy
			if err := tx.CreateKey(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i = (i*7919 + 104729) % n
			if _, err := db.GetKey(ctx, "111122223333", "", fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchPolicy is the size and shape of a default key policy.
const benchPolicy = `{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {
      "AWS" : "arn:aws:iam::111122223333:root"
    },
    "Action" : "kms:*",
    "Resource" : "*"
  } ]
}`

// BenchmarkRecordKeyUsage: one flush of the domain's key usage (3,000
// keys used in a second, at random among a million, most not yet in the
// table) into a table of 200,000 rows: what Encrypt over a million keys
// writes every second.
func BenchmarkRecordKeyUsage(b *testing.B) {
	db := openTemp(b)
	ctx := context.Background()
	at := time.Unix(1800000000, 0)
	use := func(i int) store.KeyUsage {
		return store.KeyUsage{AccountID: "111122223333", Region: "us-east-1", KeyID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", i),
			Operation: "Encrypt", RequestID: "0b5e8f7c-94a4-4a0e-9d5e-5f3c2a1b0c9d", Time: at}
	}
	var uses []store.KeyUsage
	for i := range 200000 {
		uses = append(uses, use(i*5))
	}
	if err := db.RecordKeyUsage(ctx, uses); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		uses = uses[:0]
		at = at.Add(time.Second)
		for range 3000 {
			uses = append(uses, use(r.IntN(1000000)))
		}
		if err := db.RecordKeyUsage(ctx, uses); err != nil {
			b.Fatal(err)
		}
	}
}
