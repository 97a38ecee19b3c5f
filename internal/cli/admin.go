package cli

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhold/keyhold/internal/credfile"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/sigv4"
)

// adminFlags are `keyhold admin`'s flags; each subcommand registers only
// the ones it uses.
type adminFlags struct {
	endpoint, credFile, profile string
	offline                     bool
	off                         adminOffline
}

type adminSub struct {
	name, short string
	flags       func(fs *pflag.FlagSet, f *adminFlags)
	// form builds the IAM Query request for the online mode.
	form func(f *adminFlags) (url.Values, error)
}

var adminSubs = []adminSub{
	{name: "create-account", short: "Create an account with its own admin user and access key",
		flags: func(*pflag.FlagSet, *adminFlags) {},
		form:  func(*adminFlags) (url.Values, error) { return url.Values{"Action": {"CreateAccount"}}, nil }},
	{name: "create-user", short: "Create an IAM user",
		flags: func(fs *pflag.FlagSet, f *adminFlags) { fs.StringVar(&f.off.name, "name", "", "user name (required)") },
		form: func(f *adminFlags) (url.Values, error) {
			return url.Values{"Action": {"CreateUser"}, "UserName": {f.off.name}}, nil
		}},
	{name: "create-role", short: "Create an IAM role with a trust policy",
		flags: func(fs *pflag.FlagSet, f *adminFlags) {
			fs.StringVar(&f.off.name, "name", "", "role name (required)")
			fs.StringVar(&f.off.trust, "trust-policy", "", "trust policy document file (required)")
		},
		form: func(f *adminFlags) (url.Values, error) {
			doc, err := readDoc(f.off.trust, "--trust-policy")
			return url.Values{"Action": {"CreateRole"}, "RoleName": {f.off.name}, "AssumeRolePolicyDocument": {doc}}, err
		}},
	{name: "create-access-key", short: "Create an access key for a user (offline: recover a lost admin credential)",
		flags: func(fs *pflag.FlagSet, f *adminFlags) {
			fs.StringVar(&f.off.user, "user", "", "user name (offline default: "+identity.AdminUserName+")")
			fs.BoolVar(&f.off.writeCredentials, "write-credentials", false, "with --offline: also rewrite DATA_DIR/credentials with the new key")
		},
		form: func(f *adminFlags) (url.Values, error) {
			return url.Values{"Action": {"CreateAccessKey"}, "UserName": {f.off.user}}, nil
		}},
	{name: "list-access-keys", short: "List a user's access keys",
		flags: func(fs *pflag.FlagSet, f *adminFlags) {
			fs.StringVar(&f.off.user, "user", "", "user name (offline default: "+identity.AdminUserName+")")
		},
		form: func(f *adminFlags) (url.Values, error) {
			return url.Values{"Action": {"ListAccessKeys"}, "UserName": {f.off.user}}, nil
		}},
	{name: "delete-access-key", short: "Delete a user's access key",
		flags: func(fs *pflag.FlagSet, f *adminFlags) {
			fs.StringVar(&f.off.user, "user", "", "user name (offline default: "+identity.AdminUserName+")")
			fs.StringVar(&f.off.accessKeyID, "access-key-id", "", "the access key id (required)")
		},
		form: func(f *adminFlags) (url.Values, error) {
			return url.Values{"Action": {"DeleteAccessKey"}, "UserName": {f.off.user}, "AccessKeyId": {f.off.accessKeyID}}, nil
		}},
	{name: "attach-policy", short: "Attach an inline identity policy to a user or role",
		flags: func(fs *pflag.FlagSet, f *adminFlags) {
			principalFlags(fs, f)
			fs.StringVar(&f.off.file, "file", "", "policy document file (required)")
		},
		form: func(f *adminFlags) (url.Values, error) { return policyForm(f, true) }},
	{name: "detach-policy", short: "Remove an inline identity policy from a user or role",
		flags: principalFlags,
		form:  func(f *adminFlags) (url.Values, error) { return policyForm(f, false) }},
}

func principalFlags(fs *pflag.FlagSet, f *adminFlags) {
	fs.StringVar(&f.off.user, "user", "", "user name (or --role)")
	fs.StringVar(&f.off.role, "role", "", "role name (or --user)")
	fs.StringVar(&f.off.policyName, "policy-name", "", "policy name (required)")
}

func policyForm(f *adminFlags, attach bool) (url.Values, error) {
	target, param, action := f.off.user, "UserName", "UserPolicy"
	if f.off.role != "" {
		target, param, action = f.off.role, "RoleName", "RolePolicy"
	}
	if target == "" || (f.off.user != "" && f.off.role != "") {
		return nil, usageError{errors.New("give exactly one of --user and --role")}
	}
	form := url.Values{param: {target}, "PolicyName": {f.off.policyName}}
	if !attach {
		form.Set("Action", "Delete"+action)
		return form, nil
	}
	doc, err := readDoc(f.off.file, "--file")
	form.Set("Action", "Put"+action)
	form.Set("PolicyDocument", doc)
	return form, err
}

func readDoc(path, what string) (string, error) {
	if path == "" {
		return "", usageError{fmt.Errorf("%s is required", what)}
	}
	b, err := os.ReadFile(path)
	return string(b), err
}

func adminCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Accounts, principals, access keys and identity policies",
		Long: `keyhold admin: manage accounts, principals, access keys and identity policies.

Online (default), it calls a running keyhold's IAM endpoint with the admin's
credentials, like "aws iam". With --offline it works directly on a stopped
server's data directory: the way back in when the credentials file is lost:

  keyhold admin create-access-key --offline --data-dir keyhold-data --write-credentials`,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, sub := range adminSubs {
		sub := sub
		f := &adminFlags{}
		c := &cobra.Command{
			Use:   sub.name,
			Short: sub.short,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runAdmin(cmd.Context(), sub, f, stdout)
			},
		}
		fs := c.Flags()
		def := os.Getenv("KEYHOLD_DATA_DIR")
		if def == "" {
			def = DefaultDataDir
		}
		fs.StringVar(&f.endpoint, "endpoint", "http://"+DefaultAddr, "keyhold endpoint (online)")
		fs.StringVar(&f.credFile, "credentials-file", "", "aws shared-credentials file (online; default DATA_DIR/credentials)")
		fs.StringVar(&f.profile, "profile", "default", "profile in the credentials file (online)")
		fs.StringVar(&f.off.dataDir, "data-dir", def, "data directory (env KEYHOLD_DATA_DIR)")
		fs.BoolVar(&f.offline, "offline", false, "work on the data directory of a stopped keyhold instead of its endpoint")
		fs.StringVar(&f.off.account, "account-id", "", "with --offline: the account (default: the first one)")
		sub.flags(fs, f)
		cmd.AddCommand(c)
	}
	return cmd
}

// Admin runs `keyhold admin ...` (the old entry point).
func Admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := adminCommand(stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(ctx)
}

func runAdmin(ctx context.Context, sub adminSub, f *adminFlags, stdout io.Writer) error {
	if f.offline {
		return runAdminOffline(ctx, sub.name, f.off, stdout)
	}
	if f.off.writeCredentials {
		return usageError{errors.New("--write-credentials goes with --offline")}
	}
	form, err := sub.form(f)
	if err != nil {
		return err
	}
	form.Set("Version", "2010-05-08")
	credFile := f.credFile
	if credFile == "" {
		credFile = filepath.Join(f.off.dataDir, "credentials")
	}
	cred, err := credfile.Read(credFile, f.profile)
	if err != nil {
		return fmt.Errorf("%w (lost the credentials? keyhold admin create-access-key --offline --write-credentials on the stopped server's data directory)", err)
	}
	endpoint := f.endpoint
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(endpoint, "/")+"/", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if err := (&sigv4.Signer{AccessKeyID: cred.AccessKeyID, SecretAccessKey: cred.SecretAccessKey, Region: "us-east-1", Service: "iam"}).Sign(req, []byte(body)); err != nil {
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
