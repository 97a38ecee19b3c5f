// Package policy parses and evaluates IAM policy documents the way AWS KMS
// uses them: key policies (a resource policy every key has), identity
// policies attached to users and roles, and the outcome of grants, combined
// by Decide into one allow/deny answer with a reason that renders as AWS's
// AccessDeniedException message.
//
// It is a pure function of its inputs so that the server, the domain and the
// tests can all call it and get the same answer: it must never do I/O, read
// the clock, keep state between calls, or import other keyhold packages.
// It must never log or print request contents either: encryption context
// values, tags and principal tags can be sensitive, and error messages built
// here name only the statement and element at fault, never a context value.
//
// The caller resolves who is asking (Principal), what is asked (Action,
// Resource) and the condition keys of the request (Context, built with
// NewContext and its setters) before calling Decide.
package policy
