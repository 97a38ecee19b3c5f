package credfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	body := `# keyhold admin credentials
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = s3cr3t-default
region = us-east-1

; another one
[profile ops]
AWS_ACCESS_KEY_ID=AKIAOPS
aws_secret_access_key=s3cr3t-ops
aws_session_token = tok

[half]
aws_access_key_id = AKIAHALF
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		profile string
		want    Pair
		err     string
	}{
		{"default", Pair{AccessKeyID: "AKIADEFAULT", SecretAccessKey: "s3cr3t-default"}, ""},
		{"ops", Pair{AccessKeyID: "AKIAOPS", SecretAccessKey: "s3cr3t-ops", SessionToken: "tok"}, ""},
		{"half", Pair{}, "are required"},
		{"absent", Pair{}, "has no profile [absent]"},
	} {
		got, err := Read(path, tc.profile)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.profile, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("%s: the error shows a secret: %v", tc.profile, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.profile, got, err, tc.want)
		}
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none"), "default"); err == nil {
		t.Error("a missing file reads")
	}
}
