package lru

import (
	"fmt"
	"sync"
	"testing"
)

func TestBoundAndRecency(t *testing.T) {
	c := New[string, int](3)
	for i := range 3 {
		c.Put(fmt.Sprint(i), i)
	}
	c.Get("0") // 0 was used: 1 goes first
	c.Put("3", 3)
	if _, ok := c.Get("1"); ok {
		t.Error("the least recently used entry (1) is still cached")
	}
	for _, k := range []string{"0", "2", "3"} {
		if v, ok := c.Get(k); !ok || fmt.Sprint(v) != k {
			t.Errorf("Get(%s) = %v %v", k, v, ok)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d", c.Len())
	}
	for i := range 1000 {
		c.Put(fmt.Sprint("x", i), i)
		if c.Len() > 3 {
			t.Fatalf("Len = %d past the size", c.Len())
		}
	}
}

func TestUpdateDeleteAndReuse(t *testing.T) {
	c := New[int, string](2)
	c.Put(1, "a")
	c.Put(1, "b")
	if v, _ := c.Get(1); v != "b" {
		t.Fatalf("update: %q", v)
	}
	c.Put(2, "c")
	c.Delete(1)
	if _, ok := c.Get(1); ok {
		t.Fatal("deleted entry still cached")
	}
	c.Put(3, "d") // reuses the freed slot: 2 stays
	if _, ok := c.Get(2); !ok || c.Len() != 2 {
		t.Fatalf("after reuse: Len %d", c.Len())
	}
	c.DeleteFunc(func(k int, v string) bool { return v == "d" })
	if _, ok := c.Get(3); ok || c.Len() != 1 {
		t.Fatal("DeleteFunc")
	}
}

// TestConcurrent runs readers and writers together (go test -race).
func TestConcurrent(t *testing.T) {
	c := New[int, int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				k := (i * (g + 1)) % 200
				if v, ok := c.Get(k); ok && v != k {
					t.Errorf("Get(%d) = %d", k, v)
					return
				}
				c.Put(k, k)
				if i%97 == 0 {
					c.Delete(k)
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > 64 {
		t.Fatalf("Len = %d", c.Len())
	}
}
