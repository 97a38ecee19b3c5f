package integration

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/sigv4"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// normalizers replace what changes between runs (ids, account, times,
// random bytes) so that the golden files pin only the wire shape.
var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "KEY-ID"},
	{regexp.MustCompile(`\b[0-9]{12}\b`), "ACCOUNT"},
	{regexp.MustCompile(`"(CreationDate|DeletionDate|LastUpdatedDate)":[0-9.e+]+`), `"$1":"TIME"`},
	{regexp.MustCompile(`"(CiphertextBlob|Plaintext)":"[A-Za-z0-9+/=]+"`), `"$1":"BASE64"`},
	{regexp.MustCompile(`"CurrentKeyMaterialId":"[0-9a-f]+"`), `"CurrentKeyMaterialId":"MATERIAL"`},
	{regexp.MustCompile(`"(KeyMaterialId|DestinationKeyMaterialId|SourceKeyMaterialId)":"[0-9a-f]+"`), `"$1":"MATERIAL"`},
}

func normalize(b []byte) string {
	s := string(b)
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	var v any
	if json.Unmarshal([]byte(s), &v) == nil {
		pretty, _ := json.MarshalIndent(v, "", "  ")
		s = string(pretty)
	}
	return s + "\n"
}

// TestWireGolden pins the bodies and statuses of representative responses
// and errors, as every SDK parses them. Run with -update to rewrite.
func TestWireGolden(t *testing.T) {
	e := start(t)
	signer := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	send := func(target, body string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", target)
		signer.Sign(req, []byte(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	_, created := send("TrentService.CreateKey", `{"Description":"golden","Tags":[{"TagKey":"k","TagValue":"v"}]}`)
	var ck struct{ KeyMetadata struct{ KeyId string } }
	json.Unmarshal(created, &ck)
	id := ck.KeyMetadata.KeyId
	_, enc := send("TrentService.Encrypt", `{"KeyId":"`+id+`","Plaintext":"aGVsbG8="}`)
	var ct struct{ CiphertextBlob string }
	json.Unmarshal(enc, &ct)
	cases := []struct{ name, target, body string }{
		{"create-key", "", ""},
		{"describe-key", "TrentService.DescribeKey", `{"KeyId":"` + id + `"}`},
		{"encrypt", "", ""},
		{"decrypt", "TrentService.Decrypt", `{"CiphertextBlob":"` + ct.CiphertextBlob + `"}`},
		{"generate-data-key", "TrentService.GenerateDataKey", `{"KeyId":"` + id + `","NumberOfBytes":16}`},
		{"list-keys", "TrentService.ListKeys", `{"Limit":1}`},
		{"schedule-key-deletion", "TrentService.ScheduleKeyDeletion", `{"KeyId":"` + id + `","PendingWindowInDays":7}`},
		{"error-pending-deletion", "TrentService.Encrypt", `{"KeyId":"` + id + `","Plaintext":"aGVsbG8="}`},
		{"error-not-found", "TrentService.DescribeKey", `{"KeyId":"alias/missing"}`},
		{"error-validation", "TrentService.GenerateRandom", `{"NumberOfBytes":2000}`},
		{"error-serialization", "TrentService.ListKeys", `{"Limit":"x"}`},
		{"error-unknown-operation", "TrentService.Nope", `{}`},
		{"error-invalid-ciphertext", "TrentService.Decrypt", `{"CiphertextBlob":"AQID"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var body []byte
			switch tc.name {
			case "create-key":
				status, body = 200, created
			case "encrypt":
				status, body = 200, enc
			default:
				status, body = send(tc.target, tc.body)
			}
			got := normalize(body)
			if status != 200 {
				got = "HTTP " + http.StatusText(status) + "\n" + got
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("wire body changed:\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}
