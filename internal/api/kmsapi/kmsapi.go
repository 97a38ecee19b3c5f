// Package kmsapi is the KMS wire protocol (TrentService, JSON 1.1): request
// and response structs exactly as the KMS model names them, validated
// against the embedded model, translated to internal/kms calls and back.
//
// Every operation appears once, in the table in New. This package decides
// nothing about keys; it must never put key material anywhere but the
// response fields AWS defines for it.
package kmsapi

import (
	"context"
	_ "embed"
	"math"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/kms"
)

// kms-model.json is ../../../shared/spec/kms-2014-11-01.service.json trimmed
// by scripts/trim-model.py (constraints kept, documentation dropped).
//
//go:embed kms-model.json
var modelJSON []byte

// API binds the KMS operation table to a domain service.
type API struct {
	svc   *kms.Service
	model *awsjson.Model
}

// LoadModel parses the embedded KMS model, with keyhold's one documented
// relaxation: XksProxyUriEndpoint may carry a port (self-hosted proxies).
func LoadModel() (*awsjson.Model, error) {
	return awsjson.LoadModel(relaxModel(modelJSON))
}

// status is the HTTP status of each KMS exception; 400 unless listed.
var status = map[kms.Code]int{
	kms.Internal:              500,
	kms.DependencyTimeout:     503,
	kms.DryRunOperation:       412,
	"KeyUnavailableException": 500,
}

func mapError(err error) *awsjson.Error {
	e, ok := kms.AsError(err)
	if !ok {
		return nil
	}
	st, ok := status[e.Code]
	if !ok {
		st = 400
	}
	if e.Code == kms.Internal {
		// The cause is logged by the server; the client sees only this.
		return &awsjson.Error{Type: string(kms.Internal), Status: 500, Message: "An internal error occurred. The request can be retried."}
	}
	return &awsjson.Error{Type: string(e.Code), Status: st, Message: e.Message}
}

// request is the domain's explicit Request for one call of operation name.
func request(c *awsjson.Call, name string) kms.Request {
	r := kms.NewRequest(c.Caller, name)
	r.RequestID, r.SourceIP, r.SecureTransport, r.Region = c.RequestID, c.SourceIP, c.SecureTransport, c.Region
	return r
}

// handler adapts a typed function to an operation: decode and validate the
// input against the model, call, return the output.
func handler[In any, Out any](m *awsjson.Model, name string, fn func(ctx context.Context, c kms.Request, in *In) (Out, error)) func(context.Context, *awsjson.Call) (any, error) {
	if !m.HasOperation(name) {
		panic("kmsapi: operation not in the model: " + name)
	}
	return func(ctx context.Context, c *awsjson.Call) (any, error) {
		var in In
		if d, ok := any(&in).(awsjson.MemberDecoder); !ok || !m.DecodeFast(name, c.Body, d) {
			in = *new(In) // DecodeFast may have stored part of the body
			if err := m.DecodeInput(name, c.Body, &in); err != nil {
				return nil, err
			}
		}
		r := request(c, name)
		if g, ok := any(&in).(grantTokened); ok {
			r.GrantTokens = g.grantTokenList()
		}
		return fn(ctx, r, &in)
	}
}

// epoch renders a time as JSON 1.1 does: seconds since the epoch.
type epoch float64

func toEpoch(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(math.Round(float64(t.UnixMilli())) / 1000)
	return &e
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
