package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func TestWriterModesAndPermissions(t *testing.T) {
	for _, mode := range []Mode{GroupCommit, SyncEach} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, filepath.FromSlash(DefaultPath))
			var mirror bytes.Buffer
			w, err := Open(path, WriterOptions{Mode: mode, Copy: &mirror})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := w.Write(fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
					t.Fatal(err)
				}
			}
			// After Sync the events are on disk: another reader sees them
			// before Close.
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := len(readLines(t, path)); got != 3 {
				t.Fatalf("after Sync: %d lines, want 3", got)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Write([]byte(`{}`)); err != ErrClosed {
				t.Errorf("Write after Close = %v", err)
			}
			if mirror.String() != "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n" {
				t.Errorf("mirror = %q", mirror.String())
			}
			st, _ := os.Stat(path)
			dst, _ := os.Stat(filepath.Dir(path))
			if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
				t.Errorf("modes: file %v dir %v, want 0600 and 0700", st.Mode().Perm(), dst.Mode().Perm())
			}
		})
	}
}

// TestWriterConcurrent: many writers, every event ends up as exactly one
// intact line (run with -race).
func TestWriterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	w, err := Open(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEncoder(t)
	recs := cases(t)
	const workers, each = 16, 200
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range each {
				r := recs[(g+i)%len(recs)].rec
				r.RequestID = fmt.Sprintf("%d-%d", g, i)
				line, err := e.Marshal(&r)
				if err != nil {
					t.Error(err)
					return
				}
				if err := w.Write(line); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := w.Sync(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range readLines(t, path) {
		var ev Event
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		if seen[ev.RequestID] {
			t.Fatalf("duplicate %s", ev.RequestID)
		}
		seen[ev.RequestID] = true
		for _, s := range secrets {
			if bytes.Contains(l, []byte(s)) {
				t.Fatalf("secret %q in %s", s, l)
			}
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d events, want %d", len(seen), workers*each)
	}
}

// TestWriterDurableWithinWindow documents GroupCommit: without any Sync
// call the event reaches the file, and is fsynced, within the syncer's
// window.
func TestWriterDurableWithinWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	w, err := Open(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write([]byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(readLines(t, path)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("event not written within 2s without Sync")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWriterTornTailAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	// A crash left half a line.
	if err := os.WriteFile(path, []byte("{\"ok\":1}\n{\"torn\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(`{"after":1}`))
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 3 || string(lines[2]) != `{"after":1}` {
		t.Fatalf("lines after torn tail: %q", lines)
	}
	// External rotation: rename, Reopen, new events go to a new file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(`{"rotated":1}`))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if l := readLines(t, path); len(l) != 1 || string(l[0]) != `{"rotated":1}` {
		t.Fatalf("new file: %q", l)
	}
	if l := readLines(t, path+".1"); len(l) != 3 {
		t.Fatalf("old file: %q", l)
	}
}

// TestWriterReportsFailure: when the file cannot be written, Sync says so
// and Close does not hide it.
func TestWriterReportsFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	var mu sync.Mutex
	var reported []error
	w, err := Open(path, WriterOptions{RetryInterval: time.Millisecond, OnError: func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.ioMu.Lock()
	w.f.Close() // simulate a dead file descriptor
	w.ioMu.Unlock()
	if err := w.Write([]byte(`{"lost":1}`)); err == nil {
		t.Fatal("Write succeeded on a closed file")
	}
	if err := w.Sync(); err == nil {
		t.Fatal("Sync succeeded on a closed file")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close hid the write failure")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) == 0 {
		t.Fatal("OnError not called")
	}
}

// TestWriterWrittenBeforeReturn: in GroupCommit mode the event is in the
// file (written to the OS, visible to another reader) when Write returns,
// even while fsync is stuck; a stuck fsync then holds new events back
// (MaxUnsynced) and refuses them after StallTimeout rather than letting them
// pile up unsynced.
func TestWriterWrittenBeforeReturn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	w, err := Open(path, WriterOptions{MaxUnsynced: 64, StallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	w.syncMu.Lock()
	w.f = &slowSync{file: w.f, release: release}
	w.syncMu.Unlock()
	for i := range 3 {
		if err := w.Write(fmt.Appendf(nil, `{"n":%d,"pad":"0123456789"}`, i)); err != nil {
			t.Fatal(err)
		}
		if got := len(readLines(t, path)); got != i+1 {
			t.Fatalf("after Write %d: %d lines in the file", i, got)
		}
	}
	// 3 events (> 64 bytes) are unsynced: the next Write waits, then fails.
	start := time.Now()
	if err := w.Write([]byte(`{"n":3}`)); err != ErrStalled {
		t.Fatalf("Write with fsync stuck = %v, want ErrStalled", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("Write gave up after %v, before StallTimeout", waited)
	}
	close(release)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]byte(`{"n":4}`)); err != nil {
		t.Fatalf("Write after the disk recovered: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, path)); got != 4 {
		t.Fatalf("%d lines, want 4 (the refused event is not in the file)", got)
	}
}

// slowSync holds every fsync until release is closed.
type slowSync struct {
	file
	release chan struct{}
}

func (s *slowSync) Sync() error {
	<-s.release
	return s.file.Sync()
}

// TestWriterSlowCopy: a mirror that does not read (a stuck stdout pipe)
// never holds Write back.
func TestWriterSlowCopy(t *testing.T) {
	release := make(chan struct{})
	var got bytes.Buffer
	cp := writerFunc(func(p []byte) (int, error) {
		<-release
		return got.Write(p)
	})
	w, err := Open(filepath.Join(t.TempDir(), "a.jsonl"), WriterOptions{Copy: cp})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := w.Write(fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(got.Bytes(), []byte("\n")); n != 100 {
		t.Fatalf("mirror got %d lines, want 100", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// countSync counts fsyncs.
type countSync struct {
	file
	n atomic.Int64
}

func (c *countSync) Sync() error { c.n.Add(1); return c.file.Sync() }

// TestWriterSyncInterval: with SyncInterval the syncer starts at most one
// fsync per interval however often events are written, and Sync and Close
// still make every event durable.
func TestWriterSyncInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	const interval = 40 * time.Millisecond
	w, err := Open(path, WriterOptions{SyncInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countSync{file: w.f}
	w.syncMu.Lock()
	w.f = cs
	w.syncMu.Unlock()
	start := time.Now()
	n := 0
	for time.Since(start) < 5*interval {
		if err := w.Write(fmt.Appendf(nil, `{"n":%d}`, n)); err != nil {
			t.Fatal(err)
		}
		n++
		time.Sleep(200 * time.Microsecond)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if max := int64(elapsed/interval) + 2; cs.n.Load() > max {
		t.Errorf("%d fsyncs for %d events in %v, want at most %d (one per %v)", cs.n.Load(), n, elapsed, max, interval)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, path)); got != n {
		t.Fatalf("%d events in the file, want %d", got, n)
	}
}

// TestWriterSyncIntervalHurries: with an interval far longer than the test,
// writing past half of MaxUnsynced ends the syncer's pause, so a writer past
// MaxUnsynced is let through by an fsync instead of waiting out the
// interval. Without the early fsync the last Write would wait for room until
// StallTimeout and fail with ErrStalled.
func TestWriterSyncIntervalHurries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	const maxUnsynced = 4 << 10
	w, err := Open(path, WriterOptions{SyncInterval: time.Hour, StallTimeout: 4 * time.Hour, MaxUnsynced: maxUnsynced})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The first event starts the first fsync at once; the pause follows it.
	if err := w.Write([]byte(`{"n":0}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	line := []byte(`{"pad":"` + strings.Repeat("x", 200) + `"}`)
	for i := 0; i < 4*maxUnsynced/len(line); i++ {
		if err := w.Write(line); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

// countWrites counts the write(2)s the Writer makes.
type countWrites struct {
	file
	mu sync.Mutex
	n  int
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.file.Write(p)
}

// TestWriterBatchesReadyGoroutines: with one P, events from goroutines that
// are all ready to run go out in one write, not one write each (a write(2)
// holds the only P, so nobody could join a batch while it ran).
func TestWriterBatchesReadyGoroutines(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	path := filepath.Join(t.TempDir(), "a.jsonl")
	w, err := Open(path, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cw := &countWrites{file: w.f}
	w.syncMu.Lock()
	w.f = cw
	w.syncMu.Unlock()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.Write(fmt.Appendf(nil, `{"n":%d}`, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, path)); got != n {
		t.Fatalf("%d lines in the file, want %d", got, n)
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if cw.n > n/4 {
		t.Fatalf("%d events took %d writes; want them batched", n, cw.n)
	}
	t.Logf("%d events, %d writes", n, cw.n)
}
