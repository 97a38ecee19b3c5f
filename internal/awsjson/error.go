// Package awsjson frames the AWS JSON 1.1 protocol: the operation table type,
// strict request decoding validated against the service model, and the error
// shape ({"__type": ..., "message": ...}) that every SDK parses.
//
// It knows nothing of HTTP transport details or of any domain: internal/server
// moves bytes, the api packages translate wire structs to domain calls.
package awsjson

import "fmt"

// Error is an AWS JSON 1.1 error response: the exception shape name, the HTTP
// status and a message that is safe to show to the client.
type Error struct {
	Type    string
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf builds an Error with a formatted message.
func Errorf(typ string, status int, format string, args ...any) *Error {
	return &Error{Type: typ, Status: status, Message: fmt.Sprintf(format, args...)}
}

// Common protocol errors shared by every AWS JSON service.
const (
	SerializationException = "SerializationException"
	ValidationException    = "ValidationException"
	UnknownOperation       = "UnknownOperationException"
	InternalFailure        = "InternalFailure"
	AccessDeniedException  = "AccessDeniedException"
	ThrottlingException    = "ThrottlingException"
	RequestEntityTooLarge  = "RequestEntityTooLargeException"
	MissingAuthToken       = "MissingAuthenticationTokenException"
	IncompleteSignature    = "IncompleteSignatureException"
	InvalidSignature       = "InvalidSignatureException"
	UnrecognizedClient     = "UnrecognizedClientException"
	ExpiredToken           = "ExpiredTokenException"
	InvalidAction          = "InvalidAction"
)
