package cli

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/server"
)

// observer turns the listener's per-request record into the request log
// line and the request metrics, then hands it to the audit trail. It
// decorates server.Config.Audit rather than changing the listener: the
// record already holds what an operator needs (request id, operation,
// principal, status, error code, start time).
//
// The log line never holds a body: bodies can carry plaintext, key
// material and secrets. Error messages are AWS's client-safe messages.
//
// The audit trail runs first: when it refuses the event, the server answers
// with the service's internal error, and that is what is counted and logged.
func observer(log *slog.Logger, m *metrics.Metrics, next func(context.Context, server.AuditRecord) error) func(context.Context, server.AuditRecord) error {
	return func(ctx context.Context, r server.AuditRecord) error {
		var auditErr error
		// LookupEvents reads the trail; recording the reads in it would
		// make every poll of the trail grow it.
		if next != nil && (r.Service == nil || r.Service.TargetPrefix != cloudTrailPrefix) {
			auditErr = next(ctx, r)
		}
		if auditErr != nil {
			if m != nil {
				m.AuditRefused()
			}
			r.Status, r.ErrorCode, r.ErrorMsg = 500, "InternalFailure", "the audit trail refused the event"
			if r.Service != nil {
				r.ErrorCode = r.Service.InternalError().Type
			}
		}
		d := time.Since(r.Time)
		service := "query" // IAM and STS (Query protocol) carry no operation table
		if r.Service != nil {
			service = r.Service.SigningName
		}
		if m != nil {
			m.ObserveRequest(service, r.Operation, r.ErrorCode, d)
		}
		level := slog.LevelInfo
		if r.Status >= 500 {
			level = slog.LevelError
		}
		if log.Enabled(ctx, level) {
			attrs := []slog.Attr{
				slog.String("request_id", r.RequestID),
				slog.String("service", service),
				slog.String("operation", r.Operation),
				slog.String("principal", r.Caller.ARN),
				slog.String("access_key_id", r.AccessKeyID),
				slog.String("source_ip", r.SourceIP),
				slog.Int("status", r.Status),
				slog.Float64("latency_ms", float64(d.Microseconds())/1000),
			}
			if r.ErrorCode != "" {
				attrs = append(attrs, slog.String("error_code", r.ErrorCode), slog.String("error", r.ErrorMsg))
			}
			// What log.LogAttrs does, without its runtime.Callers: the
			// record's PC serves only AddSource, which keyhold never sets.
			rec := slog.NewRecord(time.Now(), level, "request", 0)
			rec.AddAttrs(attrs...)
			log.Handler().Handle(ctx, rec)
		}
		return auditErr
	}
}

// withMetrics serves /metrics from the Prometheus registry in front of the
// API handler.
func withMetrics(m *metrics.Metrics, api http.Handler) http.Handler {
	mh := m.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && r.Method == http.MethodGet {
			mh.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
