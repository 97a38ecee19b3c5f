package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/datadir"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/policy"
)

// adminOffline is what `keyhold admin ... --offline` needs: the stopped
// server's data directory instead of its endpoint and credentials.
type adminOffline struct {
	dataDir, account                   string
	name, user, role, policyName, file string
	trust, accessKeyID                 string
	writeCredentials                   bool
}

// runAdminOffline performs an admin command directly on a stopped
// server's store (SQLite in the data directory, or KEYHOLD_DATABASE_URL,
// with KEYHOLD_ROOT_KEY as the server has them): the way back in when the credentials file is
// lost. It takes the data directory's lock, so it refuses to run beside a
// live server (which would not see the change in its caches).
func runAdminOffline(ctx context.Context, sub string, o adminOffline, stdout io.Writer) error {
	url := databaseURLFromEnv()
	if _, err := os.Stat(filepath.Join(o.dataDir, DatabaseFile)); err != nil && url == "" {
		return fmt.Errorf("--offline: %s is not a keyhold data directory (no %s)", o.dataDir, DatabaseFile)
	}
	unlock, err := datadir.Lock(o.dataDir)
	if errors.Is(err, datadir.ErrInUse) {
		return fmt.Errorf("%w; stop it first, or run without --offline against its endpoint", err)
	}
	if err != nil {
		return err
	}
	defer unlock()
	rootPath := os.Getenv("KEYHOLD_ROOT_KEY")
	if rootPath == "" {
		rootPath = filepath.Join(o.dataDir, "root.key")
	}
	if _, err := os.Stat(rootPath); err != nil {
		return fmt.Errorf("--offline: root key: %w", err)
	}
	root, err := loadRootKey(rootPath, url != "")
	if err != nil {
		return err
	}
	db, err := OpenDatabase(ctx, url, o.dataDir, 0, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	dir := identity.New(db, root)
	admin := identity.NewAdmin(dir, func(doc string, identityPolicy bool) error {
		if !identityPolicy {
			_, err := kms.ParseTrustPolicy(doc)
			return err
		}
		_, err := policy.Parse(doc, policy.IdentityPolicy)
		return err
	})
	account := o.account
	if account == "" {
		accts, err := db.ListAccounts(ctx)
		if err != nil {
			return err
		}
		if len(accts) == 0 {
			return errors.New("the data directory has no account yet: start keyhold serve once")
		}
		account = accts[0].ID
	}
	readDoc := func(path, what string) (string, error) {
		if path == "" {
			return "", fmt.Errorf("%s is required", what)
		}
		b, err := os.ReadFile(path)
		return string(b), err
	}
	switch sub {
	case "create-account":
		id, c, err := admin.CreateAccount(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "AccountId: %s\nAccessKeyId: %s\nSecretAccessKey: %s\n", id, c.AccessKeyID, c.SecretAccessKey)
	case "create-user":
		p, err := admin.CreateUser(ctx, account, o.name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "User.UserName: %s\nUser.Arn: %s\n", o.name, p.ARN)
	case "create-role":
		doc, err := readDoc(o.trust, "--trust-policy")
		if err != nil {
			return err
		}
		p, err := admin.CreateRole(ctx, account, o.name, doc)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Role.RoleName: %s\nRole.Arn: %s\n", o.name, p.ARN)
	case "create-access-key":
		user := o.user
		if user == "" {
			user = identity.AdminUserName
		}
		c, info, err := admin.CreateAccessKey(ctx, account, user)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "AccessKey.UserName: %s\nAccessKey.AccessKeyId: %s\nAccessKey.SecretAccessKey: %s\n", info.UserName, c.AccessKeyID, c.SecretAccessKey)
		if o.writeCredentials {
			path := filepath.Join(o.dataDir, "credentials")
			body := fmt.Sprintf("# keyhold credentials for %s (account %s), written by keyhold admin --offline\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
				identity.UserARN(account, user), account, c.AccessKeyID, c.SecretAccessKey)
			if err := writeFile0600(path, body); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "CredentialsFile: %s\n", path)
		}
	case "list-access-keys":
		user := o.user
		if user == "" {
			user = identity.AdminUserName
		}
		keys, err := admin.ListAccessKeys(ctx, account, user)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(stdout, "%s %s %s %s\n", k.ID, k.UserName, k.Status, k.Created.Format(time.RFC3339))
		}
	case "delete-access-key":
		user := o.user
		if user == "" {
			user = identity.AdminUserName
		}
		if o.accessKeyID == "" {
			return errors.New("--access-key-id is required")
		}
		if err := admin.DeleteAccessKey(ctx, account, user, o.accessKeyID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Deleted access key %s of %s.\n", o.accessKeyID, user)
	case "attach-policy", "detach-policy":
		typ, target := "user", o.user
		if o.role != "" {
			typ, target = "role", o.role
		}
		if target == "" || (o.user != "" && o.role != "") {
			return errors.New("give exactly one of --user and --role")
		}
		if sub == "attach-policy" {
			doc, err := readDoc(o.file, "--file")
			if err != nil {
				return err
			}
			return admin.PutPolicy(ctx, account, typ, target, o.policyName, doc)
		}
		return admin.DeletePolicy(ctx, account, typ, target, o.policyName)
	default:
		return usageError{fmt.Errorf("unknown admin command %q", sub)}
	}
	return nil
}

func writeFile0600(path, body string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, strings.NewReader(body)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
