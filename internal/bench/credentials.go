package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// credentials are the keys bench signs with. They never print.
type credentials struct {
	accessKeyID, secretAccessKey, sessionToken string
	source                                     string // where they came from, for messages
}

func (c credentials) String() string {
	return fmt.Sprintf("credentials{AccessKeyID:%q from %s}", c.accessKeyID, c.source)
}

// loadCredentials resolves credentials: the named file and profile first;
// else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; else ~/.aws/credentials
// (or AWS_SHARED_CREDENTIALS_FILE).
func loadCredentials(file, profile string, getenv func(string) string) (credentials, error) {
	if file != "" {
		return readCredentialsFile(file, profile)
	}
	if ak, sk := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); ak != "" && sk != "" {
		return credentials{accessKeyID: ak, secretAccessKey: sk, sessionToken: getenv("AWS_SESSION_TOKEN"), source: "environment"}, nil
	}
	shared := getenv("AWS_SHARED_CREDENTIALS_FILE")
	if shared == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return credentials{}, errors.New("no credentials: pass --credentials-file, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
		shared = filepath.Join(home, ".aws", "credentials")
	}
	c, err := readCredentialsFile(shared, profile)
	if errors.Is(err, os.ErrNotExist) {
		return credentials{}, errors.New("no credentials: pass --credentials-file, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or create ~/.aws/credentials")
	}
	return c, err
}

// readCredentialsFile reads one profile of an AWS shared-credentials file
// (INI: [profile] then key = value lines; '#' and ';' start comments).
func readCredentialsFile(path, profile string) (credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return credentials{}, fmt.Errorf("credentials file: %w", err)
	}
	defer f.Close()
	c := credentials{source: path + " [" + profile + "]"}
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
			c.accessKeyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			c.secretAccessKey = strings.TrimSpace(v)
		case "aws_session_token":
			c.sessionToken = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return credentials{}, fmt.Errorf("credentials file %s: %w", path, err)
	}
	if !found {
		return credentials{}, fmt.Errorf("credentials file %s has no profile [%s]", path, profile)
	}
	if c.accessKeyID == "" || c.secretAccessKey == "" {
		return credentials{}, fmt.Errorf("credentials file %s, profile [%s]: aws_access_key_id and aws_secret_access_key are required", path, profile)
	}
	return c, nil
}
