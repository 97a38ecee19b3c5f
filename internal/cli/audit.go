package cli

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/server"
)

// AuditTrail is the open audit file and the queue that feeds it.
type AuditTrail struct {
	// Hook is the server.Config.Audit hook.
	Hook func(context.Context, server.AuditRecord)
	// Path is the audit file.
	Path  string
	w     *audit.Writer
	close func() error
}

// Reopen starts a new file at Path after the current one was renamed
// away (logrotate's create mode; SIGHUP).
func (t *AuditTrail) Reopen() error { return t.w.Reopen() }

// Close drains the queue, flushes and closes the file.
func (t *AuditTrail) Close() error { return t.close() }

// AuditHook opens the audit trail, DATADIR/audit/cloudtrail.jsonl, and
// returns the server.Config.Audit hook that appends one CloudTrail event
// per request (also to mirror when it is not nil: --audit-stdout), and the
// function that flushes and closes the file.
//
// Events are encoded off the request path and group-committed: the hook
// returns before its event is written, and the event is durable within one
// fsync after it is encoded (see audit.GroupCommit); Close drains the queue. account is the recipient account of events whose
// caller is unknown (failed authentication).
func AuditHook(dataDir, region, account string, mirror io.Writer, log *slog.Logger) (func(context.Context, server.AuditRecord), func() error, error) {
	t, err := OpenAuditTrail(dataDir, region, account, mirror, log, nil)
	if err != nil {
		return nil, nil, err
	}
	return t.Hook, t.Close, nil
}

// OpenAuditTrail is AuditHook with the handle SIGHUP needs and metrics
// (m may be nil): queue depth and per-event write latency.
func OpenAuditTrail(dataDir, region, account string, mirror io.Writer, log *slog.Logger, m *metrics.Metrics) (*AuditTrail, error) {
	if log == nil {
		log = slog.Default()
	}
	enc, err := audit.NewEncoder(audit.Config{Region: region, AccountID: account})
	if err != nil {
		return nil, err
	}
	var lastLogged atomic.Int64
	logErr := func(msg string, err error) {
		// At most one line a second: a dead disk fails every request.
		now := time.Now().Unix()
		if prev := lastLogged.Load(); prev != now && lastLogged.CompareAndSwap(prev, now) {
			log.Error(msg, "err", err)
		}
	}
	path := filepath.Join(dataDir, filepath.FromSlash(audit.DefaultPath))
	w, err := audit.Open(path, audit.WriterOptions{
		Copy:    mirror,
		OnError: func(err error) { logErr("audit trail write failed; retrying", err) },
	})
	if err != nil {
		return nil, err
	}
	// Encoding walks both bodies against the service model; it runs on its
	// own goroutine so that requests do not wait for it. The queue is
	// bounded: when it is full, requests wait (no event is dropped).
	queue := make(chan server.AuditRecord, 4096)
	if m != nil {
		m.SetAuditQueue(func() int { return len(queue) })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range queue {
			start := time.Now()
			rec := audit.Record{Time: r.Time, Operation: r.Operation, Caller: r.Caller, AccessKeyID: r.AccessKeyID,
				SourceIP: r.SourceIP, UserAgent: r.UserAgent, RequestID: r.RequestID, Request: r.Request,
				Response: r.Response, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMsg}
			if r.Service != nil {
				rec.TargetPrefix = r.Service.TargetPrefix
			}
			line, err := enc.Marshal(&rec)
			if err == nil {
				err = w.Write(line)
			}
			if err != nil {
				logErr("audit event lost", err)
			}
			if m != nil {
				m.ObserveAuditWrite(time.Since(start))
			}
		}
	}()
	var mu sync.RWMutex // guards closed against sends racing the close
	closed := false
	hook := func(_ context.Context, r server.AuditRecord) {
		mu.RLock()
		defer mu.RUnlock()
		if !closed {
			queue <- r
		}
	}
	closeFn := func() error {
		mu.Lock()
		if closed {
			mu.Unlock()
			return nil
		}
		closed = true
		close(queue)
		mu.Unlock()
		<-done
		return w.Close()
	}
	return &AuditTrail{Hook: hook, Path: path, w: w, close: closeFn}, nil
}
