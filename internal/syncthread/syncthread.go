// Package syncthread fsyncs files on a thread of its own, outside Go's
// scheduler, so that a slow disk never holds a P.
//
// A goroutine in a blocking system call keeps its P until sysmon takes it
// back, and sysmon only does so after seeing the same call on two of its
// wake-ups, which under steady load are 10 ms apart. With GOMAXPROCS=1 (what
// Go picks on one CPU) every fsync therefore stopped every request for as
// long as the disk took, often several milliseconds. Here the fsync runs on a
// pthread that Go does not schedule; the goroutine asking for it waits on a
// pipe through the network poller, which holds no P, and the requests go on.
//
// It must never be used for anything but fsync(2): the thread does nothing
// else, and what it is asked to sync must stay open until Sync returns.
package syncthread

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct kh_syncthread { int req; int resp; };

// kh_syncthread_loop reads a file descriptor from req, fsyncs it and
// answers the errno (0 for success) on resp, until req is closed.
static void *kh_syncthread_loop(void *arg) {
	struct kh_syncthread *s = arg;
	for (;;) {
		int32_t fd;
		ssize_t n = read(s->req, &fd, sizeof fd);
		if (n < 0 && errno == EINTR) continue;
		if (n != sizeof fd) break;
		int32_t r = 0;
		while (fsync(fd) != 0) {
			if (errno != EINTR) { r = errno; break; }
		}
		while ((n = write(s->resp, &r, sizeof r)) < 0 && errno == EINTR) {}
		if (n != sizeof r) break;
	}
	close(s->req);
	close(s->resp);
	free(s);
	return NULL;
}

// kh_syncthread_start starts the thread, with every signal blocked so that
// the kernel delivers signals to Go's threads. It returns 0 and sets
// fds[0] (write requests) and fds[1] (read answers), both non-blocking, or
// an errno.
static int kh_syncthread_start(int *fds) {
	int req[2], resp[2];
	if (pipe2(req, O_CLOEXEC) != 0) return errno;
	if (pipe2(resp, O_CLOEXEC) != 0) {
		int e = errno;
		close(req[0]); close(req[1]);
		return e;
	}
	int e = 0;
	struct kh_syncthread *s = malloc(sizeof *s);
	if (s == NULL) { e = ENOMEM; goto fail; }
	s->req = req[0];
	s->resp = resp[1];
	if (fcntl(req[1], F_SETFL, O_NONBLOCK) != 0 || fcntl(resp[0], F_SETFL, O_NONBLOCK) != 0) { e = errno; goto fail; }
	pthread_attr_t attr;
	if ((e = pthread_attr_init(&attr)) != 0) goto fail;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	e = pthread_create(&t, &attr, kh_syncthread_loop, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (e != 0) goto fail;
	fds[0] = req[1];
	fds[1] = resp[0];
	return 0;
fail:
	free(s);
	close(req[0]); close(req[1]); close(resp[0]); close(resp[1]);
	return e;
}
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Thread is one fsync thread. Its methods are safe for concurrent use; syncs
// run one at a time, in the order they were asked for.
type Thread struct {
	mu     sync.Mutex
	req    *os.File // to the thread: file descriptors
	resp   *os.File // from the thread: errnos
	broken error    // set when the thread stopped answering: Sync falls back
}

// Start starts a thread. Close stops it.
func Start() (*Thread, error) {
	var fds [2]C.int
	if e := C.kh_syncthread_start(&fds[0]); e != 0 {
		return nil, fmt.Errorf("syncthread: starting the fsync thread: %w", syscall.Errno(e))
	}
	// Both ends are non-blocking, so os.NewFile puts them in the network
	// poller: reading an answer parks the goroutine, not the thread.
	return &Thread{
		req:  os.NewFile(uintptr(fds[0]), "syncthread-request"),
		resp: os.NewFile(uintptr(fds[1]), "syncthread-answer"),
	}, nil
}

// Sync fsyncs f on the thread and returns the fsync's error, as f.Sync
// would. If the thread is gone (it never stops on its own), Sync fsyncs on
// the calling goroutine instead: durability never depends on the thread.
func (t *Thread) Sync(f *os.File) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return f.Sync()
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	// Control keeps the descriptor open (f cannot be closed under the
	// thread) until the answer is in.
	cerr := rc.Control(func(fd uintptr) {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(fd))
		if _, err := t.req.Write(b[:]); err != nil {
			t.broken = err
			serr = f.Sync()
			return
		}
		if _, err := io.ReadFull(t.resp, b[:]); err != nil {
			t.broken = err
			serr = f.Sync()
			return
		}
		if e := binary.NativeEndian.Uint32(b[:]); e != 0 {
			serr = &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.Errno(e)}
		}
	})
	if cerr != nil {
		// f is closed: answer as f.Sync does.
		return f.Sync()
	}
	return serr
}

// Close stops the thread once the sync in progress, if any, is answered.
// Sync after Close fsyncs on the calling goroutine.
func (t *Thread) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken == nil {
		t.broken = errClosed
	}
	// Closing the request pipe ends the thread's read loop; it closes its
	// own ends.
	return errors.Join(t.req.Close(), t.resp.Close())
}

var errClosed = errors.New("syncthread: closed")
