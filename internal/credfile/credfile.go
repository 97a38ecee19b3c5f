// Package credfile reads AWS shared credentials files: the one keyhold
// writes for an account's admin (DATADIR/credentials, profile [default])
// and the ones its tools accept (--credentials-file). Sections name
// profiles ("[name]", or "[profile name]" as in a config file); blank
// lines and lines starting with # or ; are comments.
//
// It never puts a secret into an error.
package credfile

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Pair is one profile's credential.
type Pair struct {
	AccessKeyID, SecretAccessKey string
	// SessionToken is set for temporary credentials.
	SessionToken string
}

// Read returns profile's credential from the file at path. A file without
// that profile, or a profile without both an access key id and a secret,
// is an error.
func Read(path, profile string) (Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return Pair{}, fmt.Errorf("credentials file: %w", err)
	}
	defer f.Close()
	var p Pair
	in, found := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			name := strings.TrimSpace(line[1 : len(line)-1])
			name = strings.TrimSpace(strings.TrimPrefix(name, "profile "))
			in = name == profile
			found = found || in
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "aws_access_key_id":
			p.AccessKeyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			p.SecretAccessKey = strings.TrimSpace(v)
		case "aws_session_token":
			p.SessionToken = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return Pair{}, fmt.Errorf("credentials file %s: %w", path, err)
	}
	if !found {
		return Pair{}, fmt.Errorf("credentials file %s has no profile [%s]", path, profile)
	}
	if p.AccessKeyID == "" || p.SecretAccessKey == "" {
		return Pair{}, fmt.Errorf("credentials file %s, profile [%s]: aws_access_key_id and aws_secret_access_key are required", path, profile)
	}
	return p, nil
}
