package awsjson

import (
	"context"
	"fmt"

	"github.com/keyhold/keyhold/internal/principal"
)

// Caller is the authenticated principal behind a request (keyhold's one
// principal type).
type Caller = principal.Principal

// Call is one decoded-enough request handed to an operation handler.
type Call struct {
	Operation string
	Body      []byte
	RequestID string
	Caller    Caller
	// Region is the Region the request was signed for (its SigV4
	// credential scope); "" when it came another way (Invoke).
	Region    string
	SourceIP  string
	UserAgent string
	// SecureTransport is whether the request came over TLS.
	SecureTransport bool
}

// Operation is one row of a service's operation table.
type Operation struct {
	Name   string // wire name, e.g. "Encrypt"
	Action string // IAM action checked by policy, e.g. "kms:Encrypt"; required
	// Actions lists every policy action the operation is decided on when
	// there is more than one (ReEncrypt: kms:ReEncryptFrom and
	// kms:ReEncryptTo); Action is then the first.
	Actions []string
	// MaxBody bounds the request body; 0 means the service default.
	MaxBody int64
	Handle  func(ctx context.Context, c *Call) (any, error)
}

// Service is an operation table for one X-Amz-Target prefix.
type Service struct {
	TargetPrefix string // "TrentService"
	SigningName  string // SigV4 service name, "kms"
	// EveryRegion: the service answers requests signed for any Region
	// (a valid Region name), each in that Region, as KMS does behind one
	// endpoint here; otherwise only the server's own Region is accepted.
	EveryRegion bool
	// MapError turns a non-*Error returned by a handler into the wire error;
	// nil results become an internal error.
	MapError func(error) *Error
	// MaxBody is the default request body bound.
	MaxBody int64
	// Internal is the error sent for unmapped failures (the cause is only
	// logged); nil means a generic InternalFailure.
	Internal *Error
	ops      map[string]Operation
	order    []string
}

// DefaultMaxBody bounds request bodies when an operation sets no limit.
const DefaultMaxBody = 1 << 20

// NewService builds a table. It panics on a duplicate name, a missing handler
// or a missing policy action: a table without them is a programming error.
func NewService(targetPrefix, signingName string, mapErr func(error) *Error, ops ...Operation) *Service {
	s := &Service{TargetPrefix: targetPrefix, SigningName: signingName, MapError: mapErr,
		MaxBody: DefaultMaxBody, ops: make(map[string]Operation, len(ops))}
	for _, op := range ops {
		if op.Name == "" || op.Handle == nil || op.Action == "" {
			panic(fmt.Sprintf("awsjson: operation %q needs a name, a handler and a policy action", op.Name))
		}
		if _, dup := s.ops[op.Name]; dup {
			panic("awsjson: duplicate operation " + op.Name)
		}
		s.ops[op.Name] = op
		s.order = append(s.order, op.Name)
	}
	return s
}

// Lookup finds an operation by wire name.
func (s *Service) Lookup(name string) (Operation, bool) {
	op, ok := s.ops[name]
	return op, ok
}

// Operations lists the table in registration order.
func (s *Service) Operations() []Operation {
	out := make([]Operation, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, s.ops[n])
	}
	return out
}

// BodyLimit is the body bound for op.
func (s *Service) BodyLimit(op Operation) int64 {
	if op.MaxBody > 0 {
		return op.MaxBody
	}
	return s.MaxBody
}

// WireError converts any handler error to the wire error; ok is false when the
// error was unmapped (an internal failure the caller should log).
func (s *Service) WireError(err error) (e *Error, ok bool) {
	if ae, isAE := err.(*Error); isAE {
		return ae, true
	}
	if s.MapError != nil {
		if ae := s.MapError(err); ae != nil {
			return ae, true
		}
	}
	return nil, false
}

// InternalError is the service's generic internal failure.
func (s *Service) InternalError() *Error {
	if s.Internal != nil {
		return s.Internal
	}
	return &Error{Type: "InternalFailure", Status: 500, Message: "An internal error occurred."}
}
