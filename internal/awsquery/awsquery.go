// Package awsquery frames the AWS Query protocol (form-encoded requests with
// an Action, XML responses) that IAM and STS speak, so that `aws iam` and
// `aws sts` work against keyhold. Like awsjson, it knows no domain.
package awsquery

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"net/url"

	"github.com/keyhold/keyhold/internal/awsjson"
)

// Error is a Query-protocol error.
type Error struct {
	Code    string
	Status  int
	Message string
	Sender  bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Operation is one row of a Query service's operation table.
type Operation struct {
	Name   string // the Action, e.g. "CreateUser"
	Action string // the policy action, e.g. "iam:CreateUser"; required
	Handle func(ctx context.Context, c *awsjson.Call, form url.Values) (any, error)
}

// Service is an operation table for one signing name (iam, sts).
type Service struct {
	SigningName string
	Namespace   string // the XML namespace of responses
	MapError    func(error) *Error
	ops         map[string]Operation
}

// NewService builds a table; it panics on an operation without a handler
// or a policy action.
func NewService(signingName, namespace string, mapErr func(error) *Error, ops ...Operation) *Service {
	s := &Service{SigningName: signingName, Namespace: namespace, MapError: mapErr, ops: make(map[string]Operation)}
	for _, op := range ops {
		if op.Name == "" || op.Action == "" || op.Handle == nil {
			panic(fmt.Sprintf("awsquery: operation %q needs a name, a handler and a policy action", op.Name))
		}
		s.ops[op.Name] = op
	}
	return s
}

// Lookup finds an operation by Action.
func (s *Service) Lookup(action string) (Operation, bool) {
	op, ok := s.ops[action]
	return op, ok
}

// Operations lists the table.
func (s *Service) Operations() []Operation {
	out := make([]Operation, 0, len(s.ops))
	for _, op := range s.ops {
		out = append(out, op)
	}
	return out
}

// WireError converts a handler error; ok is false for an unmapped one.
func (s *Service) WireError(err error) (*Error, bool) {
	if e, ok := err.(*Error); ok {
		return e, true
	}
	if s.MapError != nil {
		if e := s.MapError(err); e != nil {
			return e, true
		}
	}
	return nil, false
}

// Response renders a successful response: <OpResponse><OpResult>result</OpResult>...
func (s *Service) Response(op, requestID string, result any) ([]byte, error) {
	var inner bytes.Buffer
	if result != nil {
		b, err := xml.Marshal(result)
		if err != nil {
			return nil, err
		}
		// result marshals as <X>...</X>; keep only what is inside.
		start := bytes.IndexByte(b, '>')
		end := bytes.LastIndexByte(b, '<')
		if start >= 0 && end > start {
			inner.Write(b[start+1 : end])
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, `<%sResponse xmlns="%s"><%sResult>`, op, s.Namespace, op)
	out.Write(inner.Bytes())
	fmt.Fprintf(&out, `</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, op, requestID, op)
	return out.Bytes(), nil
}

// ErrorBody renders an error response.
func ErrorBody(namespace, requestID string, e *Error) []byte {
	typ := "Receiver"
	if e.Sender || e.Status < 500 {
		typ = "Sender"
	}
	var msg bytes.Buffer
	xml.EscapeText(&msg, []byte(e.Message))
	var code bytes.Buffer
	xml.EscapeText(&code, []byte(e.Code))
	return []byte(fmt.Sprintf(`<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		namespace, typ, code.String(), msg.String(), requestID))
}
