// Package server is keyhold's HTTP listener: it routes AWS JSON 1.1 requests
// by their X-Amz-Target prefix to an operation table, verifies SigV4 for the
// table's signing name, and writes responses and errors as AWS shapes them.
// It also serves /healthz and /metrics.
//
// It holds no domain logic: it never decides anything about keys.
//
// Hostile clients: a request is checked from its headers (route, declared
// length against the operation's body limit, the signature's form, date,
// scope and access key) before its body is read, so a request that can never
// authenticate costs no body buffer; bodies are read only within a shared
// budget (Config.MaxBufferedBody), waiting for it rather than growing; and
// every answer is audited before it is written, with a Content-Length, in one
// write. See Limits in internal/netlimit for the connection side and the
// memory ceiling the two give together.
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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/region"
	"github.com/keyhold/keyhold/internal/sigv4"
	"github.com/keyhold/keyhold/internal/store"
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
	// denied, after the answer is decided and before it is written. It
	// returns once the event is written to the OS (so that a crash of this
	// process cannot lose it); an error means the trail cannot take the
	// event, and the client then gets the service's internal error instead
	// of an answer that would go unrecorded. The record and its bodies are
	// only valid during the call.
	Audit func(ctx context.Context, r AuditRecord) error
	// MaxBufferedBody bounds the request-body bytes held at once across all
	// requests (0 = DefaultMaxBufferedBody). A request waits for room, at
	// most BodyWait (0 = 10s), then gets a ThrottlingException.
	MaxBufferedBody int64
	BodyWait        time.Duration
}

// DefaultMaxBufferedBody is the default of Config.MaxBufferedBody.
const DefaultMaxBufferedBody = 32 << 20

// AuditRecord is what the listener knows about one API request. Request and
// Response are the raw JSON bodies: the audit trail must filter them (they
// can hold plaintext, key material and secrets). Request is nil when the
// request did not authenticate or its body could not be parsed: such
// requests are audited from their headers only.
type AuditRecord struct {
	Time        time.Time
	Service     *awsjson.Service // nil when the target was unknown
	Operation   string
	Caller      awsjson.Caller // zero when authentication failed
	AccessKeyID string         // as claimed in the signature, even if unknown
	// Region is the verified credential scope's Region ("" when the
	// request did not authenticate or came through Invoke).
	Region    string
	SourceIP  string
	UserAgent string
	RequestID string
	Request   []byte
	Response  []byte // nil on error
	Status    int
	ErrorCode string
	ErrorMsg  string
}

// Handler serves the API.
type Handler struct {
	cfg      Config
	verifier *sigv4.Verifier
	byPrefix map[string]*awsjson.Service
	log      *slog.Logger
	budget   *budget
	requests atomic.Int64
	errors   atomic.Int64
	// auditFailures counts answers replaced by an internal error because
	// the audit trail refused their event.
	auditFailures atomic.Int64
}

// New builds the HTTP handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBufferedBody <= 0 {
		cfg.MaxBufferedBody = DefaultMaxBufferedBody
	}
	if cfg.BodyWait <= 0 {
		cfg.BodyWait = 10 * time.Second
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, byPrefix: make(map[string]*awsjson.Service),
		verifier: &sigv4.Verifier{Lookup: cfg.Directory.Lookup, Now: cfg.Now}, budget: newBudget(cfg.MaxBufferedBody)}
	for _, s := range cfg.Services {
		h.byPrefix[s.TargetPrefix] = s
	}
	return h
}

const jsonContentType = "application/x-amz-json-1.1"

// jsonContentTypeValue is the Content-Type header value of every JSON
// answer, shared: net/http only reads a response's header values.
var jsonContentTypeValue = []string{jsonContentType}

func newRequestID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return blob.FormatUUID(u)
}

// reply is a decided answer, not yet written: it is audited first.
type reply struct {
	status      int
	contentType string
	errorType   string // x-amzn-ErrorType, JSON errors only
	body        []byte
	// internal is the answer to give instead when the audit trail refuses
	// the event.
	internal func() reply
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
		if h.cfg.Ready != nil && !h.cfg.Ready() {
			writeReply(w, reply{status: http.StatusServiceUnavailable, contentType: "text/plain", body: []byte("starting\n")})
			return
		}
		writeReply(w, reply{status: 200, contentType: "text/plain", body: []byte("ok\n")})
		return
	case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
		body := fmt.Sprintf("# TYPE keyhold_requests_total counter\nkeyhold_requests_total %d\n# TYPE keyhold_request_errors_total counter\nkeyhold_request_errors_total %d\n# TYPE keyhold_audit_refused_total counter\nkeyhold_audit_refused_total %d\n",
			h.requests.Load(), h.errors.Load(), h.auditFailures.Load())
		writeReply(w, reply{status: 200, contentType: "text/plain; version=0.0.4", body: []byte(body)})
		return
	}
	h.requests.Add(1)
	reqID := newRequestID()
	// Set would canonicalize the name to X-Amzn-Requestid, allocating
	// that string on every request: the same name, stored directly.
	w.Header()["X-Amzn-Requestid"] = []string{reqID}
	rec := &AuditRecord{Time: time.Now().UTC(), RequestID: reqID, SourceIP: remoteIP(r), UserAgent: r.UserAgent()}
	var release func()
	rep := h.serveAPI(r, rec, &release)
	if h.cfg.Audit != nil {
		if err := h.cfg.Audit(r.Context(), *rec); err != nil {
			// Nothing is answered that the trail did not take.
			h.auditFailures.Add(1)
			h.log.Error("audit trail refused the event; answering with an internal error", "request_id", reqID, "err", err)
			if rep.internal != nil {
				rep = rep.internal()
			}
		}
	}
	if release != nil {
		release()
	}
	writeReply(w, rep)
}

// writeReply writes a whole answer at once, with its length: nothing runs
// between the body and the end of the response.
func writeReply(w http.ResponseWriter, rep reply) {
	hd := w.Header()
	if rep.contentType == jsonContentType {
		hd["Content-Type"] = jsonContentTypeValue
	} else {
		hd["Content-Type"] = []string{rep.contentType}
	}
	if rep.errorType != "" {
		hd.Set("x-amzn-ErrorType", rep.errorType)
	}
	hd["Content-Length"] = []string{strconv.Itoa(len(rep.body))}
	w.WriteHeader(rep.status)
	w.Write(rep.body)
}

// readBody reads a request body of at most limit bytes within the shared
// body budget. The returned release gives the budget back; the caller holds
// the body until then.
func (h *Handler) readBody(r *http.Request, limit int64) (body []byte, release func(), tooLarge bool, err error) {
	if r.ContentLength > limit {
		return nil, nil, true, nil
	}
	n := r.ContentLength
	if n < 0 {
		n = limit + 1 // chunked: reserve the most it may be
	}
	if n == 0 {
		return nil, func() {}, false, nil
	}
	if !h.budget.acquire(r.Context(), n, h.cfg.BodyWait) {
		return nil, nil, false, errBusy
	}
	release = func() { h.budget.release(n) }
	buf := make([]byte, n)
	m, err := io.ReadFull(r.Body, buf)
	if r.ContentLength < 0 {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		if m > int(limit) {
			release()
			return nil, nil, true, nil
		}
	}
	if err != nil {
		release()
		return nil, nil, false, err
	}
	return buf[:m], release, false, nil
}

var errBusy = errors.New("server: request bodies in flight exceed the buffer budget")

func (h *Handler) serveAPI(r *http.Request, rec *AuditRecord, release *func()) reply {
	reqID := rec.RequestID
	if r.Method != http.MethodPost {
		return h.errorReply(nil, awsjson.Errorf(awsjson.UnknownOperation, 404, "The requested method is not supported: %s %s", r.Method, r.URL.Path), rec)
	}
	target := r.Header.Get("X-Amz-Target")
	if target == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return h.serveQuery(r, rec, release)
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
	rec.AccessKeyID = claimedAccessKey(r.Header.Get("Authorization"))
	if !ok {
		return h.errorReply(svc, awsjson.Errorf(awsjson.UnknownOperation, 400, "The operation %q is not supported by this endpoint.", clipTarget(target)), rec)
	}
	limit := svc.BodyLimit(op)
	if r.ContentLength > limit {
		return h.errorReply(svc, awsjson.Errorf(awsjson.RequestEntityTooLarge, 413, "Request body exceeds %d bytes.", limit), rec)
	}
	// Authenticate from the headers before reading the body.
	scope := sigv4.Scope{Region: h.cfg.Region, Service: svc.SigningName}
	if svc.EveryRegion {
		scope.Region, scope.Regions = "", region.Valid
	}
	pending, err := h.verifier.Begin(r.Context(), r, scope)
	if err != nil {
		return h.errorReply(svc, h.authError(svc, reqID, err), rec)
	}
	body, rel, tooLarge, err := h.readBody(r, limit)
	switch {
	case tooLarge:
		return h.errorReply(svc, awsjson.Errorf(awsjson.RequestEntityTooLarge, 413, "Request body exceeds %d bytes.", limit), rec)
	case errors.Is(err, errBusy):
		return h.errorReply(svc, awsjson.Errorf(awsjson.ThrottlingException, 400, "Rate exceeded"), rec)
	case err != nil:
		return h.errorReply(svc, awsjson.Errorf(awsjson.SerializationException, 400, "Could not read the request body."), rec)
	}
	*release = rel
	res, err := pending.Finish(body)
	if err != nil {
		return h.errorReply(svc, h.authError(svc, reqID, err), rec)
	}
	rec.Region = res.Region
	p, err := h.cfg.Directory.Authenticate(r.Context(), res.AccessKeyID, res.SessionToken, h.sessionNow())
	if err != nil {
		return h.errorReply(svc, h.authError(svc, reqID, err), rec)
	}
	return h.dispatch(r.Context(), svc, op, p, body, r.TLS != nil, rec)
}

// dispatch runs an operation for an authenticated principal: authorization,
// the handler, the answer. It is shared by SigV4 requests and Invoke.
func (h *Handler) dispatch(ctx context.Context, svc *awsjson.Service, op awsjson.Operation, p identity.Principal, body []byte, secure bool, rec *AuditRecord) reply {
	reqID, opName := rec.RequestID, op.Name
	rec.Request = body
	rec.Caller = awsjson.Caller{AccountID: p.AccountID, ARN: p.ARN, UserID: p.UserID, AccessKeyID: p.AccessKeyID, RoleARN: p.RoleARN}
	call := &awsjson.Call{Operation: opName, Body: body, RequestID: reqID, Caller: rec.Caller, Region: rec.Region, SecureTransport: secure,
		SourceIP: rec.SourceIP, UserAgent: rec.UserAgent}
	if h.cfg.Authorize != nil {
		if err := h.cfg.Authorize(ctx, call.Caller, op, body); err != nil {
			return h.handlerErrorReply(svc, reqID, opName, err, rec)
		}
	}
	out, err := op.Handle(ctx, call)
	if err != nil {
		return h.handlerErrorReply(svc, reqID, opName, err, rec)
	}
	var b []byte
	if a, ok := out.(awsjson.JSONAppender); ok {
		b = a.AppendJSON(make([]byte, 0, 512))
	} else if b, err = json.Marshal(out); err != nil {
		return h.handlerErrorReply(svc, reqID, opName, fmt.Errorf("encoding response: %w", err), rec)
	}
	rec.Status, rec.Response = 200, b
	return reply{status: 200, contentType: jsonContentType, body: b, internal: h.internalJSON(svc)}
}

// clipTarget keeps a client-sent X-Amz-Target short inside a message.
func clipTarget(t string) string {
	if len(t) > 128 {
		return t[:128]
	}
	return t
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

func (h *Handler) authError(svc *awsjson.Service, reqID string, err error) *awsjson.Error {
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
	if errors.Is(err, store.ErrUnavailable) {
		// The database is down or slow (replicas on PostgreSQL): the
		// caller may retry; KMS models this as DependencyTimeoutException.
		if svc != nil && svc.TargetPrefix == "TrentService" {
			return &awsjson.Error{Type: "DependencyTimeoutException", Status: 503, Message: "The service could not reach its database in time. The request can be retried."}
		}
		return &awsjson.Error{Type: "ServiceUnavailable", Status: 503, Message: "The service could not reach its database in time. The request can be retried."}
	}
	if svc != nil {
		return svc.InternalError()
	}
	return &awsjson.Error{Type: "InternalFailure", Status: 500, Message: "An internal error occurred."}
}

func (h *Handler) handlerErrorReply(svc *awsjson.Service, reqID, op string, err error, rec *AuditRecord) reply {
	ae, ok := svc.WireError(err)
	if !ok {
		h.log.Error("internal error", "request_id", reqID, "operation", op, "err", err)
		ae = svc.InternalError()
	} else if ae.Status >= 500 {
		h.log.Error("server error", "request_id", reqID, "operation", op, "err", err)
	}
	if ae.Type == awsjson.SerializationException {
		// An unparsable body is audited from the headers only.
		rec.Request = nil
	}
	return h.errorReply(svc, ae, rec)
}

// errorReply builds a JSON error answer and records it. svc may be nil
// (unknown target).
func (h *Handler) errorReply(svc *awsjson.Service, e *awsjson.Error, rec *AuditRecord) reply {
	h.errors.Add(1)
	if rec != nil {
		rec.Status, rec.ErrorCode, rec.ErrorMsg = e.Status, e.Type, e.Message
	}
	return jsonError(e, h.internalJSON(svc))
}

func jsonError(e *awsjson.Error, internal func() reply) reply {
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.Type, e.Message})
	return reply{status: e.Status, contentType: jsonContentType, errorType: e.Type, body: b, internal: internal}
}

// internalJSON is the answer that replaces one the audit trail refused:
// the service's internal error (KMSInternalException for KMS).
func (h *Handler) internalJSON(svc *awsjson.Service) func() reply {
	return func() reply {
		e := &awsjson.Error{Type: "InternalFailure", Status: 500, Message: "An internal error occurred."}
		if svc != nil {
			e = svc.InternalError()
		}
		return jsonError(e, nil)
	}
}

func (h *Handler) sessionNow() time.Time {
	if h.cfg.SessionNow != nil {
		return h.cfg.SessionNow()
	}
	return time.Now()
}
