// Package lru is a fixed-size in-memory cache that evicts the least
// recently used entry, approximated by CLOCK (second chance): a hit only
// sets a flag under a read lock, so concurrent readers do not contend, and
// eviction sweeps past recently used entries once before taking them.
//
// It is the bound on keyhold's domain caches (keys, aliases, grants, parsed
// policies): memory stays proportional to the configured size however many
// keys the store holds. It must never hold anything that is not also
// durable elsewhere.
package lru

import (
	"sync"
	"sync/atomic"
)

// Cache maps K to V, holding at most Size entries. Safe for concurrent use.
type Cache[K comparable, V any] struct {
	mu    sync.RWMutex
	index map[K]*entry[K, V]
	ring  []*entry[K, V] // grows to size, then entries are reused
	free  []*entry[K, V] // deleted entries, reused first
	hand  int
	size  int
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	live bool
	ref  atomic.Bool // used since the clock hand last passed
}

// New makes a cache of at most size entries (at least 1).
func New[K comparable, V any](size int) *Cache[K, V] {
	size = max(size, 1)
	return &Cache[K, V]{index: make(map[K]*entry[K, V], min(size, 1024)), size: size}
}

// Get returns the value cached for k.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.RLock()
	e, ok := c.index[k]
	var v V
	if ok {
		v = e.val
		if !e.ref.Load() {
			e.ref.Store(true)
		}
	}
	c.mu.RUnlock()
	return v, ok
}

// Put caches v for k, evicting the least recently used entry when full.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.index[k]; ok {
		e.val = v
		e.ref.Store(true)
		return
	}
	var e *entry[K, V]
	switch {
	case len(c.free) > 0:
		e = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
	case len(c.ring) < c.size:
		e = &entry[K, V]{}
		c.ring = append(c.ring, e)
	default:
		e = c.evict()
	}
	e.key, e.val, e.live = k, v, true
	e.ref.Store(false)
	c.index[k] = e
}

// evict frees the first entry the clock hand finds unused; c.mu is held and
// every ring entry is live (deleted ones sit in free).
func (c *Cache[K, V]) evict() *entry[K, V] {
	for {
		e := c.ring[c.hand]
		c.hand = (c.hand + 1) % len(c.ring)
		if e.live && e.ref.Load() {
			e.ref.Store(false)
			continue
		}
		if e.live {
			delete(c.index, e.key)
		}
		return e
	}
}

// Delete removes k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	if e, ok := c.index[k]; ok {
		c.remove(e)
	}
	c.mu.Unlock()
}

// DeleteFunc removes every entry for which del returns true.
func (c *Cache[K, V]) DeleteFunc(del func(K, V) bool) {
	c.mu.Lock()
	for k, e := range c.index {
		if del(k, e.val) {
			c.remove(e)
		}
	}
	c.mu.Unlock()
}

func (c *Cache[K, V]) remove(e *entry[K, V]) {
	delete(c.index, e.key)
	var zk K
	var zv V
	e.key, e.val, e.live = zk, zv, false
	c.free = append(c.free, e)
}

// Len is the number of entries cached.
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.index)
}

// Size is the most entries the cache holds.
func (c *Cache[K, V]) Size() int { return c.size }
