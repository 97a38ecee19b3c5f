package cli

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/sigv4"
)

const adminUsage = `keyhold admin: manage accounts, principals and policies on a running keyhold
(it calls keyhold's IAM endpoint with the admin's credentials, like "aws iam").

  keyhold admin create-account
  keyhold admin create-user --name NAME
  keyhold admin create-role --name NAME --trust-policy FILE
  keyhold admin create-access-key --user NAME
  keyhold admin attach-policy (--user NAME | --role NAME) --policy-name P --file FILE
  keyhold admin detach-policy (--user NAME | --role NAME) --policy-name P

Common flags: --endpoint URL (default http://127.0.0.1:4599), --credentials-file FILE
(default DATA_DIR/credentials), --profile NAME (default "default").
`

// Admin runs `keyhold admin ...`.
func Admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, adminUsage)
		return nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("admin "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("KEYHOLD_DATA_DIR")
	if def == "" {
		def = DefaultDataDir
	}
	endpoint := fs.String("endpoint", "http://"+DefaultAddr, "keyhold endpoint")
	credFile := fs.String("credentials-file", filepath.Join(def, "credentials"), "aws shared-credentials file")
	profile := fs.String("profile", "default", "profile in the credentials file")
	name := fs.String("name", "", "user or role name")
	user := fs.String("user", "", "user name")
	role := fs.String("role", "", "role name")
	policyName := fs.String("policy-name", "", "policy name")
	file := fs.String("file", "", "policy document file")
	trust := fs.String("trust-policy", "", "trust policy document file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	readDoc := func(path, what string) (string, error) {
		if path == "" {
			return "", fmt.Errorf("%s is required", what)
		}
		b, err := os.ReadFile(path)
		return string(b), err
	}
	form := url.Values{"Version": {"2010-05-08"}}
	switch sub {
	case "create-account":
		form.Set("Action", "CreateAccount")
	case "create-user":
		form.Set("Action", "CreateUser")
		form.Set("UserName", *name)
	case "create-role":
		doc, err := readDoc(*trust, "--trust-policy")
		if err != nil {
			return err
		}
		form.Set("Action", "CreateRole")
		form.Set("RoleName", *name)
		form.Set("AssumeRolePolicyDocument", doc)
	case "create-access-key":
		form.Set("Action", "CreateAccessKey")
		form.Set("UserName", *user)
	case "attach-policy", "detach-policy":
		target, param, action := *user, "UserName", "UserPolicy"
		if *role != "" {
			target, param, action = *role, "RoleName", "RolePolicy"
		}
		if target == "" || (*user != "" && *role != "") {
			return errors.New("give exactly one of --user and --role")
		}
		form.Set(param, target)
		form.Set("PolicyName", *policyName)
		if sub == "attach-policy" {
			doc, err := readDoc(*file, "--file")
			if err != nil {
				return err
			}
			form.Set("Action", "Put"+action)
			form.Set("PolicyDocument", doc)
		} else {
			form.Set("Action", "Delete"+action)
		}
	default:
		return fmt.Errorf("unknown admin command %q\n%s", sub, adminUsage)
	}
	ak, sk, err := readProfile(*credFile, *profile)
	if err != nil {
		return err
	}
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*endpoint, "/")+"/", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if err := (&sigv4.Signer{AccessKeyID: ak, SecretAccessKey: sk, Region: "us-east-1", Service: "iam"}).Sign(req, []byte(body)); err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		xml.Unmarshal(b, &e)
		return fmt.Errorf("%s: %s", e.Code, e.Message)
	}
	return printResult(stdout, b)
}

// printResult prints the result's leaf elements as "Name: value" lines
// (the secret of a new access key included: it is what was asked for).
func printResult(w io.Writer, b []byte) error {
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	var path []string
	var text string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			text = ""
		case xml.CharData:
			text = strings.TrimSpace(string(t))
		case xml.EndElement:
			inResult := len(path) >= 3 && strings.HasSuffix(path[1], "Result")
			if inResult && text != "" {
				v := text
				if strings.HasPrefix(v, "%7B") {
					if u, err := url.QueryUnescape(v); err == nil {
						v = u
					}
				}
				fmt.Fprintf(w, "%s: %s\n", strings.Join(path[2:], "."), v)
			}
			text = ""
			path = path[:len(path)-1]
		}
	}
}

// readProfile reads a key pair from an aws shared-credentials file.
func readProfile(path, profile string) (string, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var ak, sk, section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != profile {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			ak = strings.TrimSpace(v)
		case "aws_secret_access_key":
			sk = strings.TrimSpace(v)
		}
	}
	if ak == "" || sk == "" {
		return "", "", fmt.Errorf("%s has no key pair in profile %q", path, profile)
	}
	return ak, sk, sc.Err()
}
