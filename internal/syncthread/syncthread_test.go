package syncthread

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// startThread starts a Thread that the test's end stops.
func startThread(t testing.TB) *Thread {
	t.Helper()
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { th.Close() })
	return th
}

// tempFile creates a file that the test's end closes.
func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSyncFile(t *testing.T) {
	th := startThread(t)
	f := tempFile(t)
	for i := 0; i < 3; i++ {
		if _, err := f.WriteString("line\n"); err != nil {
			t.Fatal(err)
		}
		if err := th.Sync(f); err != nil {
			t.Fatalf("Sync %d: %v", i, err)
		}
	}
}

// A pipe cannot be fsynced: the thread's errno must come back as f.Sync's
// would, naming the file.
func TestSyncErrorIsTheFsyncs(t *testing.T) {
	th := startThread(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	want := w.Sync()
	if want == nil {
		t.Skip("this kernel fsyncs pipes")
	}
	got := th.Sync(w)
	var pe *os.PathError
	if !errors.As(got, &pe) || pe.Path != w.Name() || !errors.Is(got, syscall.EINVAL) {
		t.Fatalf("Sync(pipe) = %v, want a PathError for %s wrapping EINVAL (f.Sync said %v)", got, w.Name(), want)
	}
	// The thread is still there after a failed fsync.
	f := tempFile(t)
	if err := th.Sync(f); err != nil {
		t.Fatal(err)
	}
	if th.broken != nil {
		t.Fatalf("thread marked broken after an fsync error: %v", th.broken)
	}
}

func TestSyncClosedFile(t *testing.T) {
	th := startThread(t)
	f := tempFile(t)
	f.Close()
	if err := th.Sync(f); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Sync(closed file) = %v, want os.ErrClosed", err)
	}
}

func TestSyncAfterCloseFallsBack(t *testing.T) {
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Close(); err != nil {
		t.Fatal(err)
	}
	f := tempFile(t)
	if err := th.Sync(f); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := th.Sync(w); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Sync(pipe) after Close = %v, want EINVAL from the caller's own fsync", err)
	}
}

func TestSyncConcurrent(t *testing.T) {
	th := startThread(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, string(rune('a'+i))))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for j := 0; j < 20; j++ {
				f.WriteString("x")
				if err := th.Sync(f); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func BenchmarkSync(b *testing.B) {
	f := tempFile(b)
	b.Run("thread", func(b *testing.B) {
		th := startThread(b)
		for i := 0; i < b.N; i++ {
			f.WriteString("x")
			if err := th.Sync(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goroutine", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f.WriteString("x")
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
