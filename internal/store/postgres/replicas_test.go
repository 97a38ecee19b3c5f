package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// TestLeaderFailover: of two replicas only one runs the background work;
// when the leader's session ends (a dead process) the other takes over.
func TestLeaderFailover(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	var running atomic.Int32
	var leader atomic.Int32 // 1 = a, 2 = b
	work := func(who int32) func(context.Context) {
		return func(ctx context.Context) {
			if running.Add(1) != 1 {
				t.Error("two leaders at once")
			}
			leader.Store(who)
			<-ctx.Done()
			running.Add(-1)
		}
	}
	actx, stopA := context.WithCancel(context.Background())
	bctx, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() { a.Lead(actx, 100*time.Millisecond, nil, work(1)); close(doneA) }()
	waitFor(t, func() bool { return leader.Load() == 1 })
	go b.Lead(bctx, 100*time.Millisecond, nil, work(2))
	time.Sleep(300 * time.Millisecond)
	if leader.Load() != 1 {
		t.Fatal("the second replica took the lock from a live leader")
	}
	start := time.Now()
	stopA()
	<-doneA
	waitFor(t, func() bool { return leader.Load() == 2 })
	t.Logf("failover took %v", time.Since(start))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListen: a committed change reaches a listener as a Change.
func TestListen(t *testing.T) {
	url := pgtest.URL(t)
	a := open(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Change, 16)
	ready := make(chan struct{})
	go a.Listen(ctx, nil, func(c Change) { got <- c }, func() {}, ready)
	<-ready
	if _, err := a.db.Exec("INSERT INTO aliases (account_id, name, key_id, created, updated) VALUES ('1', 'alias/x', 'k', 0, 0)"); err != nil {
		t.Fatal(err)
	}
	// No fixed limit: a lost notification ends at the test binary's deadline.
	if c := <-got; c != (Change{Table: "aliases", A: "1", B: "alias/x"}) {
		t.Fatalf("change %+v", c)
	}
}
