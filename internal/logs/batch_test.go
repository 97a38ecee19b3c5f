package logs

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a goroutine-safe io.Writer that can be held shut.
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{} // when non-nil, each Write waits for it to close
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.buf.Write(p)
}

// TestBatchWriterKeepsEveryLine: lines from many goroutines all arrive,
// whole and in each goroutine's order, once Close returns; a Write after
// Close goes straight through.
func TestBatchWriterKeepsEveryLine(t *testing.T) {
	out := &lockedBuffer{}
	b := NewBatchWriter(out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(b, "w=%d i=%d\n", w, i)
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(b, "after close\n")
	got := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
	if len(got) != writers*lines+1 || got[len(got)-1] != "after close" {
		t.Fatalf("%d lines, last %q; want %d and the line written after Close", len(got), got[len(got)-1], writers*lines+1)
	}
	next := make([]int, writers)
	for _, l := range got[:len(got)-1] {
		var w, i int
		if _, err := fmt.Sscanf(l, "w=%d i=%d", &w, &i); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d after %d", w, i, next[w]-1)
		}
		next[w]++
	}
	if out.writes >= writers*lines {
		t.Logf("%d writes for %d lines: nothing was batched this run", out.writes, writers*lines)
	}
}

// TestBatchWriterBackPressure: while the underlying writer is stuck, Write
// waits once maxPending bytes are queued (rather than dropping lines or
// growing without bound), and every line arrives once it is unstuck.
func TestBatchWriterBackPressure(t *testing.T) {
	out := &lockedBuffer{gate: make(chan struct{})}
	b := NewBatchWriter(out)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	n := 3 * maxPending / len(line)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			b.Write(line)
		}
	}()
	// The writer goroutine holds at most one batch and the queue at most
	// maxPending (plus one line), so the writing goroutine cannot be done.
	for {
		b.mu.Lock()
		full := len(b.pending) >= maxPending
		b.mu.Unlock()
		if full {
			break
		}
	}
	select {
	case <-done:
		t.Fatal("all writes returned while the output was stuck")
	default:
	}
	close(out.gate)
	<-done
	b.Close()
	if got := out.buf.Len(); got != n*len(line) {
		t.Fatalf("%d bytes written, want %d", got, n*len(line))
	}
}

// TestBatchWriterBatchesReadyGoroutines: with one P, lines logged by
// goroutines that are all ready to run leave in a few writes, not one each.
func TestBatchWriterBatchesReadyGoroutines(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	out := &lockedBuffer{}
	b := NewBatchWriter(out)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(b, "line %d\n", i)
		}()
	}
	wg.Wait()
	b.Close()
	out.mu.Lock()
	defer out.mu.Unlock()
	if got := strings.Count(out.buf.String(), "\n"); got != n {
		t.Fatalf("%d lines, want %d", got, n)
	}
	if out.writes > n/4 {
		t.Fatalf("%d lines took %d writes; want them batched", n, out.writes)
	}
	t.Logf("%d lines, %d writes", n, out.writes)
}
