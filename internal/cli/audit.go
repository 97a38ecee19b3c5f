package cli

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/server"
)

// AuditHook opens the audit trail, DATADIR/audit/cloudtrail.jsonl, and
// returns the server.Config.Audit hook that appends one CloudTrail event
// per request (also to mirror when it is not nil: --audit-stdout), and the
// function that flushes and closes the file. account is the recipient
// account of events whose caller is unknown (failed authentication).
//
// The hook encodes the event on the request's goroutine and returns once it
// is written to the OS, grouped with concurrent requests' events: the
// server writes its answer only after that, so a crash never loses the
// event of an answered request. fsync is grouped and off the request path
// (audit.GroupCommit): an event is durable within two fsyncs, and requests
// wait when the disk falls behind. An error from the hook (the file cannot
// be written, or fsync is failing or stalled) makes the server answer with
// its internal error rather than unrecorded; FailOpenAudit turns that off.
func AuditHook(dataDir, region, account string, mirror io.Writer, log *slog.Logger) (func(context.Context, server.AuditRecord) error, func() error, error) {
	if log == nil {
		log = slog.Default()
	}
	enc, err := audit.NewEncoder(audit.Config{Region: region, AccountID: account})
	if err != nil {
		return nil, nil, err
	}
	var lastLogged atomic.Int64
	logErr := func(msg string, err error) {
		// At most one line a second: a dead disk fails every request.
		now := time.Now().Unix()
		if prev := lastLogged.Load(); prev != now && lastLogged.CompareAndSwap(prev, now) {
			log.Error(msg, "err", err)
		}
	}
	w, err := audit.Open(filepath.Join(dataDir, filepath.FromSlash(audit.DefaultPath)), audit.WriterOptions{
		Copy:    mirror,
		OnError: func(err error) { logErr("audit trail write failed", err) },
	})
	if err != nil {
		return nil, nil, err
	}
	hook := func(_ context.Context, r server.AuditRecord) error {
		rec := audit.Record{Time: r.Time, Operation: r.Operation, Caller: r.Caller, AccessKeyID: r.AccessKeyID,
			SourceIP: r.SourceIP, UserAgent: r.UserAgent, RequestID: r.RequestID, Request: r.Request,
			Response: r.Response, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMsg, Region: r.Region}
		if r.Service != nil {
			rec.TargetPrefix = r.Service.TargetPrefix
		}
		line, err := enc.Marshal(&rec)
		if err != nil {
			return err
		}
		return w.Write(line)
	}
	return hook, w.Close, nil
}

// FailOpenAudit wraps an audit hook so that a request whose event cannot be
// written is still answered (the failure is logged), like a Vault audit
// device that is not required. The default is to fail closed.
func FailOpenAudit(hook func(context.Context, server.AuditRecord) error, log *slog.Logger) func(context.Context, server.AuditRecord) error {
	var lastLogged atomic.Int64
	return func(ctx context.Context, r server.AuditRecord) error {
		if err := hook(ctx, r); err != nil {
			now := time.Now().Unix()
			if prev := lastLogged.Load(); prev != now && lastLogged.CompareAndSwap(prev, now) {
				log.Error("audit event lost (fail-open audit)", "request_id", r.RequestID, "err", err)
			}
		}
		return nil
	}
}

// AuditTrail is the open audit file and the hook that appends to it.
type AuditTrail struct {
	// Hook is the server.Config.Audit hook (fail-closed: its error makes
	// the server answer with an internal error).
	Hook func(context.Context, server.AuditRecord) error
	// Path is the audit file.
	Path  string
	w     *audit.Writer
	close func() error
}

// Reopen starts a new file at Path after the current one was renamed
// away (logrotate's create mode; SIGHUP).
func (t *AuditTrail) Reopen() error { return t.w.Reopen() }

// Close flushes, syncs and closes the file.
func (t *AuditTrail) Close() error { return t.close() }

// OpenAuditTrail is AuditHook with the handle SIGHUP needs, and metrics
// (m may be nil): events written but not yet durable, and the time each
// event takes to encode and write.
func OpenAuditTrail(dataDir, region, account string, mirror io.Writer, log *slog.Logger, m *metrics.Metrics, syncInterval time.Duration) (*AuditTrail, error) {
	if log == nil {
		log = slog.Default()
	}
	enc, err := audit.NewEncoder(audit.Config{Region: region, AccountID: account})
	if err != nil {
		return nil, err
	}
	var lastLogged atomic.Int64
	path := filepath.Join(dataDir, filepath.FromSlash(audit.DefaultPath))
	w, err := audit.Open(path, audit.WriterOptions{
		Copy:         mirror,
		SyncInterval: syncInterval,
		OnError: func(err error) {
			// At most one line a second: a dead disk fails every request.
			now := time.Now().Unix()
			if prev := lastLogged.Load(); prev != now && lastLogged.CompareAndSwap(prev, now) {
				log.Error("audit trail write failed", "path", path, "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if m != nil {
		m.SetAuditQueue(func() int { return int(w.Pending()) })
	}
	hook := func(_ context.Context, r server.AuditRecord) error {
		start := time.Now()
		rec := audit.Record{Time: r.Time, Operation: r.Operation, Caller: r.Caller, AccessKeyID: r.AccessKeyID,
			SourceIP: r.SourceIP, UserAgent: r.UserAgent, RequestID: r.RequestID, Request: r.Request,
			Response: r.Response, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMsg, Region: r.Region}
		if r.Service != nil {
			rec.TargetPrefix = r.Service.TargetPrefix
		}
		line, err := enc.Marshal(&rec)
		if err == nil {
			err = w.Write(line)
		}
		if m != nil {
			m.ObserveAuditWrite(time.Since(start))
		}
		return err
	}
	return &AuditTrail{Hook: hook, Path: path, w: w, close: w.Close}, nil
}
