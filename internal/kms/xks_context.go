package kms

import "context"

type operationKey struct{}

// WithOperation records the KMS operation a request runs (Encrypt,
// GenerateDataKey, ReEncrypt, ...). External key stores send it to the XKS
// proxy as requestMetadata.kmsOperation; the API layer sets it once per call.
func WithOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

// operationFrom returns the operation recorded by WithOperation, or def.
func operationFrom(ctx context.Context, def string) string {
	if op, ok := ctx.Value(operationKey{}).(string); ok && op != "" {
		return op
	}
	return def
}
