package sqlite

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/keyhold/keyhold/internal/syncthread"
)

// walSync makes commits durable by fsyncing the database's WAL file on a
// thread outside Go's scheduler.
//
// With synchronous=FULL SQLite fsyncs the WAL inside COMMIT, a cgo call that
// holds its P: with GOMAXPROCS=1 every request stopped for as long as the
// disk took, once a second for the key-usage flush and on every CreateKey.
// Instead the connections run with synchronous=NORMAL, which in WAL mode is
// FULL without that one fsync (the WAL is still synced before each
// checkpoint and the database after it), and the group commit calls sync
// after COMMIT and before acknowledging anything: the same fsync of the
// same file at the same point, with the goroutine parked instead of the P.
type walSync struct {
	path   string // the database's -wal file
	thread *syncthread.Thread
	mu     sync.Mutex
	f      *os.File
	// fsync is the fsync itself (tests make it fail).
	fsync func(*os.File) error
}

func newWALSync(dbPath string) *walSync {
	w := &walSync{path: dbPath + "-wal"}
	// Without the thread (out of threads or descriptors) the fsync runs on
	// the group commit's goroutine: slower for the others, as durable.
	w.thread, _ = syncthread.Start()
	w.fsync = func(f *os.File) error {
		if w.thread == nil {
			return f.Sync()
		}
		return w.thread.Sync(f)
	}
	return w
}

// sync fsyncs the WAL file as it is now.
func (w *walSync) sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		// SQLite deletes the WAL when its last connection closes (after a
		// checkpoint that synced the database) and makes a new one on the
		// next open: a descriptor of the deleted file syncs nothing.
		if st, err := w.f.Stat(); err != nil || st.Sys().(*syscall.Stat_t).Nlink == 0 {
			w.f.Close()
			w.f = nil
		}
	}
	if w.f == nil {
		f, err := os.Open(w.path)
		if errors.Is(err, fs.ErrNotExist) {
			// No WAL: the last connection's checkpoint moved every commit
			// into the database file and synced it.
			return nil
		}
		if err != nil {
			return err
		}
		w.f = f
	}
	return w.fsync(w.f)
}

func (w *walSync) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.thread != nil {
		w.thread.Close()
	}
}
