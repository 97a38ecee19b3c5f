package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/sigv4"
)

// TestServerErrorLogged: an operation failing with an unexpected error
// answers a generic internal error (no cause in it), and the log has the
// cause at level error with the request id the client was given, besides
// the request line (at error too).
func TestServerErrorLogged(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	cause := "disk on fire at /var/lib/keyhold/keyhold.db"
	e := startWith(t, t.TempDir(), func(cfg *cli.ServeConfig) {
		cfg.Logger = log
		cfg.Extra = func(context.Context, cli.Extras) ([]*awsjson.Service, func(), error) {
			return []*awsjson.Service{awsjson.NewService("KeyholdTest", "kms", nil, awsjson.Operation{
				Name: "Fail", Action: "kms:DescribeKey",
				Handle: func(context.Context, *awsjson.Call) (any, error) { return nil, errors.New(cause) },
			})}, nil, nil
		}
	})
	adm := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	status, body, h := e.raw(t, adm, "KeyholdTest.Fail", "{}")
	// A service without an error table answers AWS's generic InternalFailure.
	if status != 500 || body["__type"] != "InternalFailure" || strings.Contains(body["message"]+body["Message"], "fire") {
		t.Fatalf("answer %d %v", status, body)
	}
	reqID := h.Get("X-Amzn-Requestid")
	if reqID == "" {
		t.Fatal("no request id in the answer")
	}
	var causeLogged, requestLogged bool
	buf.mu.Lock()
	logText := buf.b.String()
	buf.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(logText), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["request_id"] != reqID {
			continue
		}
		if m["level"] == "ERROR" && strings.Contains(fmt.Sprint(m["err"]), cause) {
			causeLogged = true
		}
		if m["msg"] == "request" && m["level"] == "ERROR" && m["status"] == float64(500) && m["operation"] == "Fail" {
			requestLogged = true
		}
	}
	if !causeLogged || !requestLogged {
		t.Fatalf("cause logged %v, request line at error %v; log:\n%s", causeLogged, requestLogged, logText)
	}
}
