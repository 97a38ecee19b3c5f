// Package server is keyhold's HTTP listener: it routes AWS JSON 1.1 requests
// by their X-Amz-Target prefix to an operation table, verifies SigV4 for the
// table's signing name, and writes responses and errors as AWS shapes them.
// It also serves /healthz and /metrics.
//
// It holds no domain logic: it never decides anything about keys.
package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/sigv4"
)

// Authorizer decides whether a caller may run an operation. The policy
// engine plugs in here; nil allows every authenticated caller.
type Authorizer func(ctx context.Context, c awsjson.Caller, op awsjson.Operation, body []byte) error

// Config builds a Handler.
type Config struct {
	Region    string
	Directory *identity.Directory
	Services  []*awsjson.Service
	// QueryServices speak the Query protocol (IAM, STS), chosen by the
	// signing name in the request's credential scope.
	QueryServices []*awsquery.Service
	Authorize     Authorizer
	Logger        *slog.Logger
	Now           func() time.Time
	// SessionNow is the clock that temporary credentials expire by; nil
	// means time.Now (tests move it forward).
	SessionNow func() time.Time
	// Ready reports readiness for /healthz; nil means always ready.
	Ready func() bool
	// Audit, when set, receives one record per API request, allowed or
	// denied, after the response is decided. It must not block for long.
	Audit func(ctx context.Context, r AuditRecord)
}

// AuditRecord is what the listener knows about one API request. Request and
// Response are the raw JSON bodies: the audit trail must filter them (they
// can hold plaintext, key material and secrets).
type AuditRecord struct {
	Time        time.Time
	Service     *awsjson.Service // nil when the target was unknown
	Operation   string
	Caller      awsjson.Caller // zero when authentication failed
	AccessKeyID string         // as claimed in the signature, even if unknown
	SourceIP    string
	UserAgent   string
	RequestID   string
	Request     []byte
	Response    []byte // nil on error
	Status      int
	ErrorCode   string
	ErrorMsg    string
}

// Handler serves the API.
type Handler struct {
	cfg      Config
	verifier *sigv4.Verifier
	byPrefix map[string]*awsjson.Service
	log      *slog.Logger
	requests atomic.Int64
	errors   atomic.Int64
}

// New builds the HTTP handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, byPrefix: make(map[string]*awsjson.Service),
		verifier: &sigv4.Verifier{Lookup: cfg.Directory.Lookup, Now: cfg.Now}}
	for _, s := range cfg.Services {
		h.byPrefix[s.TargetPrefix] = s
	}
	return h
}

const jsonContentType = "application/x-amz-json-1.1"

func newRequestID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return blob.FormatUUID(u)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
		if h.cfg.Ready != nil && !h.cfg.Ready() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
		return
	case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE keyhold_requests_total counter\nkeyhold_requests_total %d\n# TYPE keyhold_request_errors_total counter\nkeyhold_request_errors_total %d\n",
			h.requests.Load(), h.errors.Load())
		return
	}
	h.requests.Add(1)
	reqID := newRequestID()
	w.Header().Set("x-amzn-RequestId", reqID)
	rec := &AuditRecord{Time: time.Now().UTC(), RequestID: reqID, SourceIP: remoteIP(r), UserAgent: r.UserAgent()}
	if h.cfg.Audit != nil {
		defer func() { h.cfg.Audit(r.Context(), *rec) }()
	}
	h.serveAPI(w, r, rec)
}

func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, rec *AuditRecord) {
	reqID := rec.RequestID
	if r.Method != http.MethodPost {
		h.writeError(w, reqID, awsjson.Errorf(awsjson.UnknownOperation, 404, "The requested method is not supported: %s %s", r.Method, r.URL.Path), rec)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	if target == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		h.serveQuery(w, r, rec)
		return
	}
	// The operation follows the last dot: CloudTrail's prefix has dots
	// (com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101).
	prefix, opName := target, ""
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		prefix, opName = target[:i], target[i+1:]
	}
	svc := h.byPrefix[prefix]
	var op awsjson.Operation
	ok := false
	if svc != nil {
		op, ok = svc.Lookup(opName)
	}
	rec.Service, rec.Operation = svc, opName
	if !ok {
		h.writeError(w, reqID, awsjson.Errorf(awsjson.UnknownOperation, 400, "The operation %q is not supported by this endpoint.", target), rec)
		return
	}
	limit := svc.BodyLimit(op)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		h.writeError(w, reqID, awsjson.Errorf(awsjson.SerializationException, 400, "Could not read the request body."), rec)
		return
	}
	if int64(len(body)) > limit {
		h.writeError(w, reqID, awsjson.Errorf(awsjson.RequestEntityTooLarge, 413, "Request body exceeds %d bytes.", limit), rec)
		return
	}
	rec.Request = body
	rec.AccessKeyID = claimedAccessKey(r.Header.Get("Authorization"))
	res, err := h.verifier.Verify(r.Context(), r, body, sigv4.Scope{Region: h.cfg.Region, Service: svc.SigningName})
	if err != nil {
		h.writeError(w, reqID, h.authError(reqID, err), rec)
		return
	}
	p, err := h.cfg.Directory.Authenticate(r.Context(), res.AccessKeyID, res.SessionToken, h.sessionNow())
	if err != nil {
		h.writeError(w, reqID, h.authError(reqID, err), rec)
		return
	}
	rec.Caller = awsjson.Caller{AccountID: p.AccountID, ARN: p.ARN, UserID: p.UserID, AccessKeyID: p.AccessKeyID, RoleARN: p.RoleARN}
	call := &awsjson.Call{Operation: opName, Body: body, RequestID: reqID, Caller: rec.Caller, SecureTransport: r.TLS != nil,
		SourceIP: remoteIP(r), UserAgent: r.UserAgent()}
	if h.cfg.Authorize != nil {
		if err := h.cfg.Authorize(r.Context(), call.Caller, op, body); err != nil {
			h.writeHandlerError(w, svc, reqID, opName, err, rec)
			return
		}
	}
	out, err := op.Handle(r.Context(), call)
	if err != nil {
		h.writeHandlerError(w, svc, reqID, opName, err, rec)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		h.writeHandlerError(w, svc, reqID, opName, fmt.Errorf("encoding response: %w", err), rec)
		return
	}
	rec.Status, rec.Response = 200, b
	w.Header().Set("Content-Type", jsonContentType)
	w.Write(b)
}

// claimedAccessKey extracts the access key id from a SigV4 Authorization
// header without trusting it (for the audit trail of failed requests).
func claimedAccessKey(auth string) string {
	id, _ := claimedCredential(auth)
	return id
}

// claimedCredential reads the access key id and service of a SigV4
// Authorization header's Credential without trusting them.
func claimedCredential(auth string) (accessKeyID, service string) {
	_, rest, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	scope, _, _ := strings.Cut(rest, ",")
	parts := strings.Split(scope, "/")
	if len(parts[0]) > 128 {
		return "", ""
	}
	if len(parts) == 5 {
		service = parts[3]
	}
	return parts[0], service
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) authError(reqID string, err error) *awsjson.Error {
	msg := err.Error()
	switch {
	case errors.Is(err, sigv4.ErrMissingAuth):
		return &awsjson.Error{Type: awsjson.MissingAuthToken, Status: 400, Message: "Request is missing Authentication Token"}
	case errors.Is(err, sigv4.ErrIncomplete):
		return &awsjson.Error{Type: awsjson.IncompleteSignature, Status: 400, Message: msg}
	case errors.Is(err, identity.ErrExpiredToken):
		return &awsjson.Error{Type: awsjson.ExpiredToken, Status: 400, Message: "The security token included in the request is expired"}
	case errors.Is(err, sigv4.ErrUnknownAccessKey), errors.Is(err, identity.ErrInvalidToken):
		return &awsjson.Error{Type: awsjson.UnrecognizedClient, Status: 400, Message: "The security token included in the request is invalid."}
	case errors.Is(err, sigv4.ErrSignature), errors.Is(err, sigv4.ErrExpired), errors.Is(err, sigv4.ErrScope):
		return &awsjson.Error{Type: awsjson.InvalidSignature, Status: 400, Message: msg}
	}
	h.log.Error("authentication failed internally", "request_id", reqID, "err", err)
	return &awsjson.Error{Type: "InternalFailure", Status: 500, Message: "An internal error occurred."}
}

func (h *Handler) writeHandlerError(w http.ResponseWriter, svc *awsjson.Service, reqID, op string, err error, rec *AuditRecord) {
	ae, ok := svc.WireError(err)
	if !ok {
		h.log.Error("internal error", "request_id", reqID, "operation", op, "err", err)
		ae = svc.InternalError()
	} else if ae.Status >= 500 {
		h.log.Error("server error", "request_id", reqID, "operation", op, "err", err)
	}
	h.writeError(w, reqID, ae, rec)
}

func (h *Handler) writeError(w http.ResponseWriter, reqID string, e *awsjson.Error, rec *AuditRecord) {
	h.errors.Add(1)
	if rec != nil {
		rec.Status, rec.ErrorCode, rec.ErrorMsg = e.Status, e.Type, e.Message
	}
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Type, e.Message})
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("x-amzn-ErrorType", e.Type)
	w.WriteHeader(e.Status)
	w.Write(b)
}

func (h *Handler) sessionNow() time.Time {
	if h.cfg.SessionNow != nil {
		return h.cfg.SessionNow()
	}
	return time.Now()
}
