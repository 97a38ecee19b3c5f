// Package datadir holds what keyhold knows about its data directory as a
// whole: that its path is made absolute once, at the edge, and that one
// server owns it at a time (an OS file lock).
//
// It never reads or writes the state inside the directory; the store, the
// root key and the credentials file do that.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the lock's name inside the data directory. It holds the pid
// of the server that holds the lock, for the message a second server prints.
const LockFile = "keyhold.lock"

// ErrInUse is wrapped by Lock's error when another process holds the lock.
var ErrInUse = errors.New("data directory in use")

// Abs returns dir as an absolute, clean path: everything stored or handed
// to another process (HSM token directories, daemons' configs) is derived
// from it, so the server and the owner commands agree whatever their
// working directories.
func Abs(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("datadir: empty data directory")
	}
	a, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("datadir: %w", err)
	}
	return a, nil
}

// Lock takes the data directory's exclusive lock without waiting and
// records this process's pid in it. The lock is an flock(2): the kernel
// releases it when the process exits, however it exits (kill -9 included),
// so a crashed server never leaves a stale lock. Another holder, in this
// process or another, makes Lock fail at once with an error wrapping
// ErrInUse that names the holder's pid.
func Lock(dir string) (release func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("datadir.Lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "unknown pid"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is locked by another keyhold server (%s); stop it or use another --data-dir", ErrInUse, dir, holder)
		}
		return nil, fmt.Errorf("datadir.Lock: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		f.Sync()
	}
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
