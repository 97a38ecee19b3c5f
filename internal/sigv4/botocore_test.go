package sigv4

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// botocoreScript signs with botocore's SigV4Auth (what boto3 and the aws CLI
// use) and sends the request with urllib; it prints the HTTP status.
const botocoreScript = `
import sys, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, service, body, target = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4]
headers = {"Content-Type": "application/x-amz-json-1.1"}
if target:
    headers["X-Amz-Target"] = target
req = AWSRequest(method="POST", url=url, data=body, headers=headers)
SigV4Auth(Credentials("AKBOTO", "boto-secret"), service, "us-east-1").add_auth(req)
prepared = req.prepare()
r = urllib.request.Request(url, data=body, headers=dict(prepared.headers), method="POST")
try:
    print(urllib.request.urlopen(r, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
`

// TestBotocoreClient verifies requests signed by botocore itself.
func TestBotocoreClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed; install python3 and botocore to run the botocore SigV4 check")
	}
	if exec.Command(py, "-c", "import botocore").Run() != nil {
		t.Skip("botocore not importable; pip install botocore to run the botocore SigV4 check")
	}
	cases := []struct{ name, service, path, body, target string }{
		{"kms encrypt", "kms", "/", `{"KeyId":"alias/a","Plaintext":"aGk="}`, "TrentService.Encrypt"},
		{"xks health", "kms-xks-proxy", "/tenant_1/kms/xks/v1/health", `{"requestMetadata":{"kmsRequestId":"1","kmsOperation":"KmsHealthCheck"}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Lookup: staticLookup(map[string]string{"AKBOTO": "boto-secret"})}
			srv := echoServer(t, v, Scope{Region: "us-east-1", Service: tc.service})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "-c", botocoreScript, srv.URL+tc.path, tc.service, tc.body, tc.target)
			cmd.Env = append(cmd.Environ(), "NO_PROXY=*", "no_proxy=*")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v: %s", err, out)
			}
			if strings.TrimSpace(string(out)) != "200" {
				t.Fatalf("botocore-signed request rejected: %s", out)
			}
		})
	}
}
