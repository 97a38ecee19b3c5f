package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyhold/keyhold/internal/credfile"
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

// readCredentialsFile reads one profile of an AWS shared-credentials file.
func readCredentialsFile(path, profile string) (credentials, error) {
	p, err := credfile.Read(path, profile)
	if err != nil {
		return credentials{}, err
	}
	return credentials{accessKeyID: p.AccessKeyID, secretAccessKey: p.SecretAccessKey, sessionToken: p.SessionToken,
		source: path + " [" + profile + "]"}, nil
}
