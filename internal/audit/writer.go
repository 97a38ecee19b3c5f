package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/syncthread"
)

// DefaultPath is the audit file inside a data directory.
const DefaultPath = "audit/cloudtrail.jsonl"

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: writer closed")

// Mode chooses when an event becomes durable.
type Mode int

const (
	// GroupCommit (the default): Write returns once the event is written to
	// the OS (write(2) on the file, grouped with every concurrent Write), so
	// a crash of this process cannot lose an event whose Write returned; a
	// background goroutine fsyncs whatever was written, one fsync for
	// everything that arrived while the previous one ran, so that power
	// loss loses at most the events of the last two fsyncs. Write never
	// waits for an fsync unless the disk falls behind: more than
	// MaxUnsynced bytes written but not fsynced make Write wait (back-
	// pressure), and an event left unsynced for longer than StallTimeout
	// makes Write fail (the trail is not durable: the caller must not
	// answer). Sync waits for durability.
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

// Defaults of WriterOptions.
const (
	DefaultMaxUnsynced  = 8 << 20
	DefaultStallTimeout = 5 * time.Second
)

// ErrStalled is returned by Write when the oldest event written but not yet
// fsynced is older than StallTimeout.
var ErrStalled = errors.New("audit: the audit trail is not being made durable (fsync stalled)")

// WriterOptions configures Open.
type WriterOptions struct {
	Mode Mode
	// Copy, when set, also receives every line (e.g. os.Stdout). It is
	// written after the file by its own goroutine (a slow reader never
	// holds requests back: past MaxUnsynced bytes waiting for it, lines are
	// left out of the copy), never synced, and its errors are ignored.
	Copy io.Writer
	// OnError is told about write and fsync failures (the fsync is retried
	// every RetryInterval); nil ignores them. Write and Sync report them.
	OnError func(error)
	// RetryInterval defaults to 100ms.
	RetryInterval time.Duration
	// MaxUnsynced bounds the bytes written but not yet fsynced before
	// Write waits (GroupCommit); 0 = DefaultMaxUnsynced.
	MaxUnsynced int64
	// StallTimeout bounds how long an event may stay written but not
	// fsynced before Write refuses new events; 0 = DefaultStallTimeout. It
	// is also the longest Write waits for room under MaxUnsynced.
	StallTimeout time.Duration
	// SyncInterval (GroupCommit) is the least time between the starts of
	// two fsyncs: 0 (the default) fsyncs again as soon as the previous
	// fsync returned and something was written meanwhile. A larger value
	// means fewer fsyncs (less CPU, fewer blocking system calls on a busy
	// server) for a longer window of events that a power loss could take:
	// at most SyncInterval plus one fsync. Never more than StallTimeout/2.
	SyncInterval time.Duration
}

// Writer appends one JSON line per event to a file, durably. It never
// rotates the file: Reopen, called after an external tool has renamed it
// (e.g. on SIGHUP), starts a new one. Safe for concurrent use.
type Writer struct {
	path string
	opts WriterOptions

	mu       sync.Mutex
	change   chan struct{} // closed (and replaced) whenever the state below changes
	pending  []byte        // accepted, not yet written
	spare    []byte        // the last written batch, reused as the next pending buffer
	accepted uint64        // events accepted
	writing  bool          // a Write is writing a batch
	written  uint64        // events handed to write(2) (including lost ones)
	lost     uint64        // events up to this one whose write(2) failed
	lostErr  error
	durable  uint64 // events written and fsynced
	// unsynced counts bytes written and not yet fsynced; oldest is when the
	// oldest of them was written (zero when none).
	unsynced int64
	oldest   time.Time
	syncErr  error // last fsync failure, cleared by a success
	torn     bool  // a short write may have left half a line
	closed   bool
	// mirror holds lines written to the file and not yet to Copy.
	mirror       []byte
	mirrorActive bool

	thread *syncthread.Thread // fsyncs f; nil: f.Sync on the syncer goroutine
	ioMu   sync.Mutex         // held while writing to f or swapping it
	syncMu sync.Mutex         // held while fsyncing f or swapping it
	f      file
	done   chan struct{}
	quit   chan struct{} // closed by Close: the syncer stops pausing
	// hurry ends the syncer's pause early: Write sends (without waiting)
	// when half of MaxUnsynced is written and not fsynced.
	hurry       chan struct{}
	syncWaiters int // Syncs waiting (w.mu)
	// mirrorDone is closed when the Copy goroutine has finished.
	mirrorDone chan struct{}
}

// file is what the Writer needs of its *os.File (tests slow it down).
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// Open opens (creating with mode 0600, its directory with 0700) the audit
// file at path for appending.
func Open(path string, opts WriterOptions) (*Writer, error) {
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 100 * time.Millisecond
	}
	if opts.MaxUnsynced <= 0 {
		opts.MaxUnsynced = DefaultMaxUnsynced
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	opts.SyncInterval = min(max(opts.SyncInterval, 0), opts.StallTimeout/2)
	w := &Writer{path: path, opts: opts, done: make(chan struct{}), quit: make(chan struct{}), hurry: make(chan struct{}, 1), change: make(chan struct{})}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	// Without the thread (it cannot start only when the process is out of
	// threads or descriptors) fsync runs on the syncer goroutine, as before.
	w.thread, _ = syncthread.Start()
	if opts.Mode == GroupCommit {
		go w.syncer()
	} else {
		close(w.done)
	}
	w.mirrorDone = make(chan struct{})
	if opts.Mode == GroupCommit && opts.Copy != nil {
		go w.mirrorer()
	} else {
		close(w.mirrorDone)
	}
	return w, nil
}

// notify wakes everything waiting on a state change; w.mu is held.
func (w *Writer) notify() {
	close(w.change)
	w.change = make(chan struct{})
}

// wait releases w.mu until the state changes or the deadline passes
// (zero: no deadline); w.mu is held again on return.
func (w *Writer) wait(deadline time.Time) {
	ch := w.change
	w.mu.Unlock()
	if deadline.IsZero() {
		<-ch
	} else if d := time.Until(deadline); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	w.mu.Lock()
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
// it returns once the line is written to the OS (not yet fsynced); in
// SyncEach mode once it is fsynced. An error means the event is not in the
// trail.
func (w *Writer) Write(line []byte) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if w.opts.Mode == SyncEach {
		defer w.mu.Unlock()
		buf := append(append(make([]byte, 0, len(line)+1), line...), '\n')
		w.ioMu.Lock()
		err := w.writeFile(buf)
		if err == nil {
			err = w.fsync()
		}
		w.ioMu.Unlock()
		if err == nil && w.opts.Copy != nil {
			w.opts.Copy.Write(buf)
		}
		if err != nil {
			w.report(err)
			return err
		}
		w.accepted++
		w.written++
		w.durable++
		return nil
	}
	// Back-pressure: wait while the disk is behind, fail once it is stuck.
	deadline := time.Now().Add(w.opts.StallTimeout)
	for {
		if w.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		if w.syncErr != nil {
			err := w.syncErr
			w.mu.Unlock()
			return fmt.Errorf("audit: event refused: %w", err)
		}
		if !w.oldest.IsZero() && time.Since(w.oldest) > w.opts.StallTimeout {
			w.mu.Unlock()
			return ErrStalled
		}
		if w.unsynced <= w.opts.MaxUnsynced {
			break
		}
		if !time.Now().Before(deadline) {
			w.mu.Unlock()
			return ErrStalled
		}
		w.wait(deadline)
	}
	w.pending = append(w.pending, line...)
	w.pending = append(w.pending, '\n')
	w.accepted++
	seq := w.accepted
	// Group write: whoever finds no write in progress writes everything
	// pending, its own event and those of every Write that arrived while the
	// previous batch was being written.
	for w.written < seq {
		if w.writing {
			w.wait(time.Time{})
			continue
		}
		w.writing = true
		batch, upto := w.pending, w.accepted
		w.pending, w.spare = w.spare[:0], nil
		torn := w.torn
		w.mu.Unlock()

		if torn {
			batch = append([]byte{'\n'}, batch...)
		}
		w.ioMu.Lock()
		err := w.writeFile(batch)
		w.ioMu.Unlock()

		w.mu.Lock()
		if err == nil && w.opts.Copy != nil && len(w.mirror) < int(w.opts.MaxUnsynced) {
			w.mirror = append(w.mirror, batch...)
		}
		w.writing = false
		w.written = upto
		if err != nil {
			w.lost, w.lostErr, w.torn = upto, err, true
			w.report(err)
		} else {
			w.torn = false
			if w.unsynced == 0 {
				w.oldest = time.Now()
			}
			w.unsynced += int64(len(batch))
			if w.unsynced >= w.opts.MaxUnsynced/2 {
				select {
				case w.hurry <- struct{}{}:
				default:
				}
			}
			if cap(batch) <= int(w.opts.MaxUnsynced) {
				w.spare = batch[:0]
			}
		}
		w.notify()
	}
	var err error
	if seq <= w.lost && w.lostErr != nil {
		err = w.lostErr
	}
	w.mu.Unlock()
	return err
}

// report tells OnError about a failure, outside no lock it needs.
func (w *Writer) report(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// Sync waits until every event written before the call is durable, or an
// fsync fails (that error is returned; the syncer keeps retrying).
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.written
	if w.durable < target {
		// Whoever waits for durability does not wait out SyncInterval.
		w.syncWaiters++
		defer func() { w.syncWaiters-- }()
		select {
		case w.hurry <- struct{}{}:
		default:
		}
	}
	for w.durable < target {
		if w.syncErr != nil {
			return w.syncErr
		}
		if w.closed && w.syncerGone() {
			return ErrClosed
		}
		w.wait(time.Time{})
	}
	if w.lostErr != nil && w.lost >= target && target > 0 {
		// The last events never reached the file.
		return w.lostErr
	}
	return nil
}

func (w *Writer) syncerGone() bool {
	select {
	case <-w.done:
		return true
	default:
	}
	return false
}

// syncer is the group-commit loop: fsync everything written so far, publish,
// repeat. Batching comes from the fsync itself: what is written while one
// runs is covered by the next.
func (w *Writer) syncer() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for w.durable == w.written && !(w.closed && !w.writing) {
			w.wait(time.Time{})
		}
		if w.durable == w.written && w.closed && !w.writing {
			w.mu.Unlock()
			return
		}
		target, bytes := w.written, w.unsynced
		w.mu.Unlock()

		started := time.Now()
		w.syncMu.Lock()
		err := w.fsync()
		w.syncMu.Unlock()

		w.mu.Lock()
		if err != nil {
			w.syncErr = err
			w.notify()
			closed := w.closed
			w.mu.Unlock()
			w.report(err)
			if closed {
				return // Close reports it
			}
			time.Sleep(w.opts.RetryInterval)
			continue
		}
		w.durable, w.syncErr = target, nil
		w.unsynced -= bytes
		if w.unsynced == 0 {
			w.oldest = time.Time{}
		} else {
			// Written while this fsync ran: the next one covers them.
			w.oldest = time.Now()
		}
		w.notify()
		w.mu.Unlock()
		w.pause(started)
	}
}

// pause waits until SyncInterval after started, until Close, until a Sync
// waits, or until half of MaxUnsynced is waiting for an fsync: a busy server must not make its
// requests wait for room (back-pressure) merely because the interval has not
// passed yet.
func (w *Writer) pause(started time.Time) {
	d := w.opts.SyncInterval - time.Since(started)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-w.quit:
			return
		case <-w.hurry:
			w.mu.Lock()
			full := w.unsynced >= w.opts.MaxUnsynced/2 || w.syncWaiters > 0
			w.mu.Unlock()
			if full {
				return
			}
		}
	}
}

// mirrorer writes what reached the file to Copy, off the request path.
func (w *Writer) mirrorer() {
	defer close(w.mirrorDone)
	var buf []byte
	for {
		w.mu.Lock()
		for len(w.mirror) == 0 && !(w.closed && !w.writing) {
			w.wait(time.Time{})
		}
		if len(w.mirror) == 0 {
			w.mu.Unlock()
			return
		}
		buf, w.mirror = w.mirror, buf[:0]
		w.mu.Unlock()
		w.opts.Copy.Write(buf)
	}
}

// writeFile writes buf fully; w.ioMu is held.
func (w *Writer) writeFile(buf []byte) error {
	if _, err := w.f.Write(buf); err != nil {
		return fmt.Errorf("audit: write %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) fsync() error {
	var err error
	if f, ok := w.f.(*os.File); ok && w.thread != nil {
		// Off Go's scheduler: with one P, an fsync on a goroutine stops
		// every request for as long as the disk takes.
		err = w.thread.Sync(f)
	} else {
		err = w.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("audit: fsync %s: %w", w.path, err)
	}
	return nil
}

// Reopen flushes what was written so far and opens path again: after the
// file was renamed away it starts a new one.
func (w *Writer) Reopen() error {
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	if err := w.Sync(); err != nil {
		return err
	}
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	w.syncMu.Lock()
	old := w.f
	w.f = f
	w.syncMu.Unlock()
	return old.Close()
}

// Close writes and fsyncs every accepted event, then closes the file.
// Writes after Close fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	close(w.quit)
	w.notify()
	w.mu.Unlock()
	<-w.done
	<-w.mirrorDone
	w.mu.Lock()
	err := w.syncErr
	if err == nil && w.lostErr != nil {
		err = w.lostErr
	}
	w.mu.Unlock()
	w.ioMu.Lock()
	defer w.ioMu.Unlock()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if w.thread != nil {
		w.thread.Close()
	}
	return err
}
