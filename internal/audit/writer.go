package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultPath is the audit file inside a data directory.
const DefaultPath = "audit/cloudtrail.jsonl"

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: writer closed")

// Mode chooses when an event becomes durable.
type Mode int

const (
	// GroupCommit (the default): Write only appends to a memory buffer and
	// returns; one background goroutine writes whatever has accumulated and
	// fsyncs it, then starts again with what arrived meanwhile. An event is
	// durable at most one write+fsync after the one in progress when Write
	// returned (a few milliseconds on a local SSD; see BenchmarkWriter).
	// Sync waits for it, so a caller that must not answer before its event
	// is on disk calls Write then Sync and shares the fsync with every
	// concurrent caller.
	GroupCommit Mode = iota
	// SyncEach writes and fsyncs every event inside Write.
	SyncEach
)

func (m Mode) String() string {
	if m == SyncEach {
		return "SyncEach"
	}
	return "GroupCommit"
}

// maxPending bounds the bytes GroupCommit buffers. Beyond it Write blocks
// while the disk is merely slow (back-pressure rather than lost events) and
// fails while writes are failing (the event is lost and the caller told).
const maxPending = 8 << 20

// WriterOptions configures Open.
type WriterOptions struct {
	Mode Mode
	// Copy, when set, also receives every line (e.g. os.Stdout). It is
	// written after the file, never synced, and its errors are ignored.
	Copy io.Writer
	// OnError is told about write and fsync failures (GroupCommit retries
	// them every RetryInterval); nil ignores them, Sync still reports them.
	OnError func(error)
	// RetryInterval defaults to 100ms.
	RetryInterval time.Duration
}

// Writer appends one JSON line per event to a file, durably. It never
// rotates the file: Reopen, called after an external tool has renamed it
// (e.g. on SIGHUP), starts a new one. Safe for concurrent use.
type Writer struct {
	path string
	opts WriterOptions

	mu       sync.Mutex
	cond     *sync.Cond // broadcast when durable, err or pending change
	pending  []byte     // accepted, not yet written
	spare    []byte     // the last written batch, reused as the next pending buffer
	accepted uint64     // events accepted
	durable  uint64     // events written and fsynced
	err      error      // last write/fsync failure, cleared by a success
	closed   bool

	ioMu sync.Mutex // held while writing/fsyncing or reopening f
	f    *os.File
	done chan struct{}
}

// Open opens (creating with mode 0600, its directory with 0700) the audit
// file at path for appending.
func Open(path string, opts WriterOptions) (*Writer, error) {
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 100 * time.Millisecond
	}
	w := &Writer{path: path, opts: opts, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	if opts.Mode == GroupCommit {
		go w.flusher()
	} else {
		close(w.done)
	}
	return w, nil
}

func openFile(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.Open: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit.Open: %w", err)
	}
	if os.IsNotExist(statErr) {
		// Make the new file's directory entry durable too.
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	// A crash can leave a torn last line: end it so that the next event
	// starts on a line of its own (readers skip the one unparsable line).
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("audit.Open: %w", err)
			}
		}
	}
	return f, nil
}

// Write appends line (one JSON event, without newline). In GroupCommit mode
// it returns before the line is durable; in SyncEach mode after.
func (w *Writer) Write(line []byte) error {
	w.mu.Lock()
	for len(w.pending) > maxPending && !w.closed {
		if w.err != nil {
			// The disk is failing, not just slow: refuse rather than stall
			// every request behind it.
			err := w.err
			w.mu.Unlock()
			return fmt.Errorf("audit: event dropped, %d bytes pending: %w", maxPending, err)
		}
		w.cond.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if w.opts.Mode == SyncEach {
		defer w.mu.Unlock()
		buf := append(append(make([]byte, 0, len(line)+1), line...), '\n')
		w.ioMu.Lock()
		err := w.writeSync(buf)
		w.ioMu.Unlock()
		if err != nil {
			return err
		}
		w.accepted++
		w.durable++
		return nil
	}
	w.pending = append(w.pending, line...)
	w.pending = append(w.pending, '\n')
	w.accepted++
	w.cond.Broadcast()
	w.mu.Unlock()
	return nil
}

// Sync waits until every event accepted before the call is durable, or a
// write or fsync fails (that error is returned; the flusher keeps retrying).
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.accepted
	for w.durable < target {
		if w.err != nil {
			return w.err
		}
		if w.closed && w.flusherGone() {
			return ErrClosed
		}
		w.cond.Wait()
	}
	return nil
}

func (w *Writer) flusherGone() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// flusher is the group-commit loop: take everything pending, write it,
// fsync, publish, repeat. Batching comes from the fsync itself: what
// arrives while one runs goes out with the next.
func (w *Writer) flusher() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.pending) == 0 && w.closed {
			w.mu.Unlock()
			return
		}
		batch, n := w.pending, w.accepted
		// Double buffering: writers append into the buffer the last batch
		// used, so the steady state allocates nothing.
		w.pending, w.spare = w.spare[:0], nil
		w.cond.Broadcast() // wake writers blocked on maxPending
		w.mu.Unlock()

		w.ioMu.Lock()
		err := w.writeSync(batch)
		w.ioMu.Unlock()

		w.mu.Lock()
		if err != nil {
			// Put the batch back in front and retry later.
			w.pending = append(batch, w.pending...)
			w.err = err
			w.cond.Broadcast()
			closed := w.closed
			w.mu.Unlock()
			if w.opts.OnError != nil {
				w.opts.OnError(err)
			}
			if closed {
				return // Close reports w.err
			}
			time.Sleep(w.opts.RetryInterval)
			continue
		}
		w.durable, w.err = n, nil
		if cap(batch) <= maxPending {
			w.spare = batch[:0]
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// writeSync writes buf fully and fsyncs; w.ioMu is held. A short write
// leaves the remainder for the retry, at the cost of a possible torn line.
func (w *Writer) writeSync(buf []byte) error {
	if _, err := w.f.Write(buf); err != nil {
		return fmt.Errorf("audit: write %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync %s: %w", w.path, err)
	}
	if w.opts.Copy != nil {
		w.opts.Copy.Write(buf)
	}
	return nil
}

// Reopen flushes what was written so far and opens path again: after the
// file was renamed away it starts a new one.
func (w *Writer) Reopen() error {
	if err := w.Sync(); err != nil {
		return err
	}
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	old := w.f
	w.f = f
	return old.Close()
}

// Close flushes and fsyncs every accepted event, then closes the file.
// Writes after Close fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	err := w.err
	if len(w.pending) > 0 && err == nil {
		err = fmt.Errorf("audit: %d bytes not written", len(w.pending))
	}
	w.mu.Unlock()
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
