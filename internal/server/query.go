package server

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/sigv4"
)

const queryBodyLimit = 64 << 10

// serveQuery handles Query-protocol requests (IAM and STS).
func (h *Handler) serveQuery(r *http.Request, rec *AuditRecord, release *func()) reply {
	reqID := rec.RequestID
	_, name := claimedCredential(r.Header.Get("Authorization"))
	var svc *awsquery.Service
	for _, s := range h.cfg.QueryServices {
		if s.SigningName == name {
			svc = s
		}
	}
	ns := "https://iam.amazonaws.com/doc/2010-05-08/"
	if svc != nil {
		ns = svc.Namespace
	}
	var internal func() reply
	fail := func(e *awsquery.Error) reply {
		h.errors.Add(1)
		rec.Status, rec.ErrorCode, rec.ErrorMsg = e.Status, e.Code, e.Message
		return reply{status: e.Status, contentType: "text/xml", body: awsquery.ErrorBody(ns, reqID, e), internal: internal}
	}
	internal = func() reply {
		e := &awsquery.Error{Code: "ServiceFailure", Status: 500, Message: "An internal error occurred."}
		return reply{status: e.Status, contentType: "text/xml", body: awsquery.ErrorBody(ns, reqID, e)}
	}
	rec.AccessKeyID = claimedAccessKey(r.Header.Get("Authorization"))
	if svc == nil {
		if name == "" {
			return fail(&awsquery.Error{Code: "MissingAuthenticationToken", Status: 403, Message: "Request is missing Authentication Token"})
		}
		return fail(&awsquery.Error{Code: "InvalidAction", Status: 400, Message: "This endpoint does not serve the " + clipTarget(name) + " Query API."})
	}
	if r.ContentLength > queryBodyLimit {
		return fail(&awsquery.Error{Code: "ValidationError", Status: 400, Message: "The request body is too large or unreadable."})
	}
	// Authenticate from the headers before reading the body.
	pending, err := h.verifier.Begin(r.Context(), r, sigv4.Scope{Service: svc.SigningName})
	if err != nil {
		return fail(queryAuthError(err))
	}
	body, rel, tooLarge, err := h.readBody(r, queryBodyLimit)
	switch {
	case errors.Is(err, errBusy):
		return fail(&awsquery.Error{Code: "Throttling", Status: 400, Message: "Rate exceeded"})
	case tooLarge || err != nil:
		return fail(&awsquery.Error{Code: "ValidationError", Status: 400, Message: "The request body is too large or unreadable."})
	}
	*release = rel
	res, err := pending.Finish(body)
	if err != nil {
		return fail(queryAuthError(err))
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return fail(&awsquery.Error{Code: "MalformedQueryString", Status: 400, Message: "The request body is not a valid form."})
	}
	action := form.Get("Action")
	op, ok := svc.Lookup(action)
	rec.Operation = action
	if !ok {
		return fail(&awsquery.Error{Code: "InvalidAction", Status: 400, Message: "Could not find operation " + clipTarget(action) + " for version " + clipTarget(form.Get("Version"))})
	}
	p, err := h.cfg.Directory.Authenticate(r.Context(), res.AccessKeyID, res.SessionToken, h.sessionNow())
	if err != nil {
		return fail(queryAuthError(err))
	}
	rec.Request = body
	rec.Caller = awsjson.Caller{AccountID: p.AccountID, ARN: p.ARN, UserID: p.UserID, AccessKeyID: p.AccessKeyID, RoleARN: p.RoleARN}
	call := &awsjson.Call{Operation: action, Body: body, RequestID: reqID, Caller: rec.Caller, SourceIP: rec.SourceIP, UserAgent: rec.UserAgent}
	handlerErr := func(err error) reply {
		if qe, ok := svc.WireError(err); ok {
			return fail(qe)
		}
		var ae *awsjson.Error
		if errors.As(err, &ae) {
			code := ae.Type
			if code == awsjson.AccessDeniedException {
				code = "AccessDenied"
			}
			return fail(&awsquery.Error{Code: code, Status: ae.Status, Message: ae.Message})
		}
		h.log.Error("internal error", "request_id", reqID, "operation", action, "err", err)
		return fail(&awsquery.Error{Code: "ServiceFailure", Status: 500, Message: "An internal error occurred."})
	}
	if h.cfg.Authorize != nil {
		if err := h.cfg.Authorize(r.Context(), call.Caller, awsjson.Operation{Name: op.Name, Action: op.Action}, body); err != nil {
			return handlerErr(err)
		}
	}
	out, err := op.Handle(r.Context(), call, form)
	if err != nil {
		return handlerErr(err)
	}
	b, err := svc.Response(action, reqID, out)
	if err != nil {
		return handlerErr(err)
	}
	rec.Status, rec.Response = 200, b
	return reply{status: 200, contentType: "text/xml", body: b, internal: internal}
}

func queryAuthError(err error) *awsquery.Error {
	switch {
	case errors.Is(err, sigv4.ErrMissingAuth):
		return &awsquery.Error{Code: "MissingAuthenticationToken", Status: 403, Message: "Request is missing Authentication Token"}
	case errors.Is(err, sigv4.ErrIncomplete):
		return &awsquery.Error{Code: "IncompleteSignature", Status: 403, Message: err.Error()}
	case errors.Is(err, identity.ErrExpiredToken):
		return &awsquery.Error{Code: "ExpiredToken", Status: 403, Message: "The security token included in the request is expired"}
	case errors.Is(err, sigv4.ErrUnknownAccessKey), errors.Is(err, identity.ErrInvalidToken):
		return &awsquery.Error{Code: "InvalidClientTokenId", Status: 403, Message: "The security token included in the request is invalid."}
	case errors.Is(err, sigv4.ErrSignature), errors.Is(err, sigv4.ErrExpired), errors.Is(err, sigv4.ErrScope):
		return &awsquery.Error{Code: "SignatureDoesNotMatch", Status: 403, Message: err.Error()}
	}
	return &awsquery.Error{Code: "ServiceFailure", Status: 500, Message: "An internal error occurred."}
}
