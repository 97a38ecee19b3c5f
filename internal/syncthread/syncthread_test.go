package syncthread

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func TestSyncFile(t *testing.T) {
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
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
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := th.Sync(f); err != nil {
		t.Fatal(err)
	}
	if th.broken != nil {
		t.Fatalf("thread marked broken after an fsync error: %v", th.broken)
	}
}

func TestSyncClosedFile(t *testing.T) {
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
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
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
	th, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
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
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.Run("thread", func(b *testing.B) {
		th, err := Start()
		if err != nil {
			b.Fatal(err)
		}
		defer th.Close()
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
