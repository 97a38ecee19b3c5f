package server

import (
	"context"
	"crypto/subtle"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/sigv4"
)

// Invocation is one API operation run for a principal that proved its
// credentials other than by signing this request (the web console's
// session). Everything after SigV4 is the same as for a signed request: the
// access key is authenticated again (a deactivated key or an expired
// session stops working at once), then the same authorization, handler,
// error table and audit event.
type Invocation struct {
	TargetPrefix string // "TrentService", "BaldrApiService"
	Operation    string
	Body         []byte // the operation's JSON request
	AccessKeyID  string
	SessionToken string
	SourceIP     string
	UserAgent    string
	// SecureTransport is whether the principal reached keyhold over TLS
	// (aws:SecureTransport).
	SecureTransport bool
}

// InvokeResult is an operation's answer: Body on success, Err otherwise.
type InvokeResult struct {
	RequestID string
	Body      []byte
	Err       *awsjson.Error
}

// Invoke runs one operation as in.AccessKeyID's principal, audited exactly
// like a signed request (the event carries in.UserAgent). As for signed
// requests, an answer the audit trail refuses becomes the service's
// internal error.
func (h *Handler) Invoke(ctx context.Context, in Invocation) InvokeResult {
	h.requests.Add(1)
	rec := &AuditRecord{Time: time.Now().UTC(), RequestID: newRequestID(), SourceIP: in.SourceIP, UserAgent: in.UserAgent,
		Operation: in.Operation, AccessKeyID: in.AccessKeyID}
	rep, ae := h.invoke(ctx, in, rec)
	if h.cfg.Audit != nil {
		if err := h.cfg.Audit(ctx, *rec); err != nil {
			h.auditFailures.Add(1)
			h.log.Error("audit trail refused the event; answering with an internal error", "request_id", rec.RequestID, "err", err)
			ie := &awsjson.Error{Type: "InternalFailure", Status: 500, Message: "An internal error occurred."}
			if rec.Service != nil {
				ie = rec.Service.InternalError()
			}
			return InvokeResult{RequestID: rec.RequestID, Err: ie}
		}
	}
	if ae != nil {
		return InvokeResult{RequestID: rec.RequestID, Err: ae}
	}
	return InvokeResult{RequestID: rec.RequestID, Body: rep.body}
}

func (h *Handler) invoke(ctx context.Context, in Invocation, rec *AuditRecord) (reply, *awsjson.Error) {
	svc := h.byPrefix[in.TargetPrefix]
	rec.Service = svc
	var op awsjson.Operation
	ok := false
	if svc != nil {
		op, ok = svc.Lookup(in.Operation)
	}
	fail := func(e *awsjson.Error) (reply, *awsjson.Error) {
		return h.errorReply(svc, e, rec), e
	}
	if !ok {
		return fail(awsjson.Errorf(awsjson.UnknownOperation, 400, "The operation %q is not supported by this endpoint.", clipTarget(in.TargetPrefix+"."+in.Operation)))
	}
	if limit := svc.BodyLimit(op); int64(len(in.Body)) > limit {
		return fail(awsjson.Errorf(awsjson.RequestEntityTooLarge, 413, "Request body exceeds %d bytes.", limit))
	}
	p, err := h.cfg.Directory.Authenticate(ctx, in.AccessKeyID, in.SessionToken, h.sessionNow())
	if err != nil {
		return fail(h.authError(svc, rec.RequestID, err))
	}
	rep := h.dispatch(ctx, svc, op, p, in.Body, in.SecureTransport, rec)
	if rec.ErrorCode != "" {
		return rep, &awsjson.Error{Type: rec.ErrorCode, Status: rec.Status, Message: rec.ErrorMsg}
	}
	return rep, nil
}

// SignIn checks an access key pair (and the session token of temporary
// credentials) as SigV4 verification would: the secret the directory holds
// for the key, compared in constant time, then the principal's
// authentication. The error is the one a signed request with these
// credentials would get (UnrecognizedClientException,
// InvalidSignatureException, ExpiredTokenException).
func (h *Handler) SignIn(ctx context.Context, accessKeyID, secret, sessionToken string) (awsjson.Caller, *awsjson.Error) {
	reqID := newRequestID()
	want, err := h.cfg.Directory.Lookup(ctx, accessKeyID)
	if err != nil {
		return awsjson.Caller{}, h.authError(nil, reqID, err)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return awsjson.Caller{}, h.authError(nil, reqID, sigv4.ErrSignature)
	}
	p, err := h.cfg.Directory.Authenticate(ctx, accessKeyID, sessionToken, h.sessionNow())
	if err != nil {
		return awsjson.Caller{}, h.authError(nil, reqID, err)
	}
	return awsjson.Caller{AccountID: p.AccountID, ARN: p.ARN, UserID: p.UserID, AccessKeyID: p.AccessKeyID, RoleARN: p.RoleARN}, nil
}
