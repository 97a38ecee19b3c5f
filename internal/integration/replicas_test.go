package integration

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// replica starts one keyhold on a shared PostgreSQL database with the shared
// root key; credentials are the first replica's.
// sharedRootKey writes a random root key file for the replicas of one test
// to share, and returns its path.
func sharedRootKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "root.key")
	raw := make([]byte, 32)
	rand.Read(raw)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func replica(t *testing.T, url, rootKey string, first *env) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := cli.ServeConfig{DataDir: dir, Region: "us-east-1", DatabaseURL: url, RootKeyFile: rootKey,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l, err := cli.StartLocal(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	e := &env{Endpoint: l.Endpoint, Account: l.AccountID, Instance: l.Instance}
	if first == nil {
		e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
	} else {
		e.AccessKey, e.Secret = first.AccessKey, first.Secret
	}
	e.KMS = e.client(t, e.AccessKey, e.Secret)
	return e
}

// within polls check until it returns nil and returns how long the change
// took to show (logged by the callers: a measurement, not an assertion; no
// replica cache expires by age, so a change shows only through the
// invalidation the test is about).
func within(t *testing.T, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := waitDeadline(t)
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never visible on the other replica: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplicas runs two keyhold replicas on one PostgreSQL database: every
// write through one is what the other serves next, and policy, alias,
// grant and enable/disable changes take effect on the other even though
// each replica caches them (how soon is logged; e2e/replicas.sh prints it
// too).
func TestReplicas(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "its replicas use PostgreSQL in every pass")
	pgtest.Need(t)
	ctx := context.Background()
	url := pgtest.URL(t)
	rootKey := sharedRootKey(t)
	a := replica(t, url, rootKey, nil)
	b := replica(t, url, rootKey, a)
	if a.Account != b.Account {
		t.Fatalf("replicas serve accounts %s and %s", a.Account, b.Account)
	}
	k, err := a.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := *k.KeyMetadata.KeyId
	enc, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("across replicas")})
	if err != nil {
		t.Fatalf("Encrypt on the other replica: %v", err)
	}
	dec, err := a.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "across replicas" {
		t.Fatalf("Decrypt on the first: %q, %v", dec.Plaintext, err)
	}

	// Aliases: created on A, used on B (B has the alias cached once used).
	if _, err := a.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/rep"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/rep"), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("alias on the other replica: %v", err)
	}
	k2, err := a.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.KMS.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/rep"), TargetKeyId: k2.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	d := within(t, "UpdateAlias", func() error {
		out, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/rep"), Plaintext: []byte("x")})
		if err != nil {
			return err
		}
		if *out.KeyId != *k2.KeyMetadata.Arn {
			return fmt.Errorf("alias still resolves to %s", *out.KeyId)
		}
		return nil
	})
	t.Logf("alias update visible on the other replica after %v", d)

	// Disable on A: B refuses; enable again.
	if _, err := a.KMS.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	d = within(t, "DisableKey", func() error {
		_, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		var de *types.DisabledException
		if errors.As(err, &de) {
			return nil
		}
		return fmt.Errorf("Encrypt = %v", err)
	})
	t.Logf("disable visible on the other replica after %v", d)
	if _, err := a.KMS.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	within(t, "EnableKey", func() error {
		_, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		return err
	})

	// A key policy Deny put through A is enforced by B.
	deny := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Sid":"admin","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"kms:*","Resource":"*"},
		{"Sid":"no-encrypt","Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}`, a.Account)
	if _, err := a.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &id, PolicyName: aws.String("default"), Policy: &deny}); err != nil {
		t.Fatal(err)
	}
	d = within(t, "PutKeyPolicy Deny", func() error {
		_, err := b.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException" {
			return nil
		}
		return fmt.Errorf("Encrypt = %v", err)
	})
	t.Logf("policy Deny enforced by the other replica after %v", d)

	// A grant retired through A stops working on B.
	g, err := a.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: k2.KeyMetadata.KeyId, GranteePrincipal: aws.String("arn:aws:iam::" + a.Account + ":user/nobody"),
		Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	within(t, "CreateGrant", func() error {
		out, err := b.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: k2.KeyMetadata.KeyId})
		if err != nil || len(out.Grants) != 1 {
			return fmt.Errorf("ListGrants = %v, %v", out, err)
		}
		return nil
	})
	if _, err := a.KMS.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: k2.KeyMetadata.KeyId, GrantId: g.GrantId}); err != nil {
		t.Fatal(err)
	}
	within(t, "RevokeGrant", func() error {
		out, err := b.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: k2.KeyMetadata.KeyId})
		if err != nil || len(out.Grants) != 0 {
			return fmt.Errorf("ListGrants = %v, %v", out, err)
		}
		return nil
	})
}
