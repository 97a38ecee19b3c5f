package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/store"
)

// ErrDataDirInUse is returned when another keyhold holds the data
// directory's lock.
var ErrDataDirInUse = errors.New("the data directory is in use by a running keyhold")

// lockDataDir takes the data directory's exclusive lock (DATADIR/lock, an
// flock held for the process's life): one server per data directory, and
// offline admin commands only on a stopped one. The lock goes with the
// process, so kill -9 never leaves it stale.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w: %s", ErrDataDirInUse, abs)
		}
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// customKeyStoreStates lists every custom key store's persisted connection
// state for the metrics gauge (the domain persists each transition).
func customKeyStoreStates(st store.Store) func(ctx context.Context) []metrics.StoreState {
	return func(ctx context.Context) []metrics.StoreState {
		accts, err := st.ListAccounts(ctx)
		if err != nil {
			return nil
		}
		var out []metrics.StoreState
		for _, a := range accts {
			recs, err := st.ListCustomKeyStores(ctx, a.ID)
			if err != nil {
				continue
			}
			for _, r := range recs {
				state := r.ConnectionState
				if state == "" {
					state = "DISCONNECTED"
				}
				out = append(out, metrics.StoreState{AccountID: r.AccountID, ID: r.ID, Type: r.Type, State: state})
			}
		}
		return out
	}
}
