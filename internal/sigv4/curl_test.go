package sigv4

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCurlClient runs the real curl --aws-sigv4 (an independent SigV4
// implementation, which signs content-type;host;x-amz-date[;x-amz-target] and
// no content-length) against a 127.0.0.1 server that calls Verify.
func TestCurlClient(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed; install curl to run the real-client SigV4 check")
	}
	cases := []struct {
		name, service, path, body string
		headers                   []string
		user                      string
		wantOK                    bool
	}{
		{"kms ListKeys", "kms", "/", "{}", []string{"X-Amz-Target: TrentService.ListKeys", "Content-Type: application/x-amz-json-1.1"}, "AKCURL:curl-secret", true},
		{"xks encrypt", "kms-xks-proxy", "/example/kms/xks/v1/keys/k1/encrypt", `{"requestMetadata":{"kmsRequestId":"1","kmsOperation":"Encrypt"},"plaintext":"aGk="}`,
			[]string{"Content-Type: application/json"}, "AKCURL:curl-secret", true},
		{"wrong secret", "kms", "/", "{}", []string{"X-Amz-Target: TrentService.ListKeys", "Content-Type: application/x-amz-json-1.1"}, "AKCURL:not-the-secret", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Lookup: staticLookup(map[string]string{"AKCURL": "curl-secret"})}
			srv := echoServer(t, v, Scope{Region: "us-east-1", Service: tc.service})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := []string{"-sS", "--noproxy", "*", "-w", "\n%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:" + tc.service, "--user", tc.user, "-d", tc.body}
			for _, h := range tc.headers {
				args = append(args, "-H", h)
			}
			args = append(args, srv.URL+tc.path)
			out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			code := lines[len(lines)-1]
			if tc.wantOK && code != "200" {
				t.Fatalf("curl request rejected: %s", out)
			}
			if !tc.wantOK && code != "403" {
				t.Fatalf("curl request with the wrong secret: %s", out)
			}
			if !tc.wantOK && !strings.Contains(string(out), "does not match") {
				t.Errorf("want a signature mismatch, got %s", out)
			}
		})
	}
}
