package logs

import (
	"io"
	"runtime"
	"sync"
)

// maxPending bounds the bytes a BatchWriter holds before Write waits for its
// goroutine to catch up: a slow log reader slows requests down rather than
// growing memory or losing lines.
const maxPending = 1 << 20

// BatchWriter hands log lines to one goroutine that writes them to the
// underlying writer, every line that arrived since its last write in one
// write: a busy server then makes one system call per batch of request log
// lines instead of one per request, and a request never waits for its log
// line's write. The cost is that a line is on its way, not written, when
// Write returns: a crash (kill -9) can lose the last lines, written a few
// microseconds before it. The audit trail, not the log, is the record that
// must survive a crash. Close writes everything still held.
type BatchWriter struct {
	out io.Writer

	mu      sync.Mutex
	pending []byte
	closed  bool
	room    *sync.Cond // signalled when pending is taken by the goroutine
	wake    chan struct{}
	done    chan struct{}
}

// NewBatchWriter starts the goroutine writing to out.
func NewBatchWriter(out io.Writer) *BatchWriter {
	b := &BatchWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.room = sync.NewCond(&b.mu)
	go b.run()
	return b
}

// Write queues a copy of p (slog writes one whole line per call). After
// Close it writes p directly.
func (b *BatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.pending) >= maxPending && !b.closed {
		b.room.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return b.out.Write(p)
	}
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *BatchWriter) run() {
	defer close(b.done)
	var buf []byte
	for {
		b.mu.Lock()
		buf, b.pending = b.pending, buf[:0]
		closed := b.closed
		b.room.Broadcast()
		b.mu.Unlock()
		if len(buf) > 0 {
			b.out.Write(buf) // a log that cannot be written has nowhere to report it
		}
		if closed {
			return
		}
		if len(buf) == 0 {
			<-b.wake
			// Let the goroutines that are ready to run log their lines
			// first. With one P this goroutine would otherwise run as soon
			// as the request that woke it blocked, and write each line with
			// a system call of its own.
			runtime.Gosched()
		}
		if cap(buf) > maxPending {
			buf = nil
		}
	}
}

// Close writes every queued line and stops the goroutine; later Writes go
// straight to the underlying writer.
func (b *BatchWriter) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.room.Broadcast()
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	<-b.done
	return nil
}
