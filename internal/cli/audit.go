package cli

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/server"
)

// AuditHook opens the audit trail, DATADIR/audit/cloudtrail.jsonl, and
// returns the server.Config.Audit hook that appends one CloudTrail event
// per request (also to mirror when it is not nil: --audit-stdout), and the
// function that flushes and closes the file.
//
// Events are group-committed: the hook returns before its event is fsynced,
// and the event is durable within one fsync of the hook returning (see
// audit.GroupCommit). account is the recipient account of events whose
// caller is unknown (failed authentication).
func AuditHook(dataDir, region, account string, mirror io.Writer, log *slog.Logger) (func(context.Context, server.AuditRecord), func() error, error) {
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
		OnError: func(err error) { logErr("audit trail write failed; retrying", err) },
	})
	if err != nil {
		return nil, nil, err
	}
	hook := func(_ context.Context, r server.AuditRecord) {
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
	}
	return hook, w.Close, nil
}
