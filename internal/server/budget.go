package server

import (
	"context"
	"sync"
	"time"
)

// budget is a weighted semaphore over request-body bytes: the bodies held at
// once never exceed its size. Waiters are served in arrival order, so a large
// body is not starved by small ones.
type budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64) *budget { return &budget{size: size} }

// acquire takes n bytes, waiting at most wait (or until ctx ends). A request
// larger than the whole budget takes all of it.
func (b *budget) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	if n > b.size {
		n = b.size
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted while giving up: give it back
		b.used -= w.n
		b.grant()
		return false
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			break
		}
	}
	b.grant()
	return false
}

func (b *budget) release(n int64) {
	if n > b.size {
		n = b.size
	}
	b.mu.Lock()
	b.used -= n
	b.grant()
	b.mu.Unlock()
}

// grant wakes waiters from the front while they fit; b.mu is held.
func (b *budget) grant() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.size {
			return
		}
		b.used += w.n
		b.waiters = b.waiters[1:]
		close(w.ready)
	}
}
