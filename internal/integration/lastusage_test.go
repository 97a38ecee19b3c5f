package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// requestID is the x-amzn-RequestId keyhold answered with.
func requestID(md middleware.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	return id
}

// TestKeyLastUsageSurvivesRestart: GetKeyLastUsage answers from the store,
// so the last use (operation, time, request id) is there after keyhold
// restarts on the same data directory, and TrackingStartDate does not move.
func TestKeyLastUsageSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := startWith(t, dir, nil)
	k, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	before, err := e.KMS.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: id})
	if err != nil || before.KeyLastUsage != nil || before.TrackingStartDate == nil {
		t.Fatalf("unused key: %+v, %v", before, err)
	}
	s, err := e.KMS.Sign(ctx, &kms.SignInput{KeyId: id, Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		t.Fatal(err)
	}
	rid := requestID(s.ResultMetadata)
	// The same server answers with its own latest use at once.
	now, err := e.KMS.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: id})
	if err != nil || now.KeyLastUsage == nil || now.KeyLastUsage.Operation != types.KeyLastUsageTrackingOperationSign {
		t.Fatalf("after Sign: %+v, %v", now.KeyLastUsage, err)
	}
	e.Instance.Close()

	e2 := startWith(t, dir, nil)
	after, err := e2.KMS.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: id})
	if err != nil || after.KeyLastUsage == nil {
		t.Fatalf("after restart: %+v, %v", after, err)
	}
	u := after.KeyLastUsage
	if u.Operation != types.KeyLastUsageTrackingOperationSign || u.KmsRequestId == nil || *u.KmsRequestId != rid || rid == "" ||
		u.Timestamp == nil || time.Since(*u.Timestamp) > time.Minute {
		t.Fatalf("last use after restart = %+v (want Sign, request %q)", u, rid)
	}
	if !after.TrackingStartDate.Equal(*before.TrackingStartDate) {
		t.Fatalf("TrackingStartDate moved on restart: %v -> %v", before.TrackingStartDate, after.TrackingStartDate)
	}
}

// TestKeyLastUsageAcrossReplicas: two replicas on one PostgreSQL database
// give the same answer; a use on one shows on the other once written (uses
// are written in batches at most once a second).
func TestKeyLastUsageAcrossReplicas(t *testing.T) {
	oncePerSuite(t, "its replicas use PostgreSQL in every pass")
	pgtest.Need(t)
	ctx := context.Background()
	url := pgtest.URL(t)
	rootKey := sharedRootKey(t)
	a := replica(t, url, rootKey, nil)
	b := replica(t, url, rootKey, a)
	k, err := a.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	for i, c := range []*kms.Client{a.KMS, b.KMS, a.KMS} {
		out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		rid := requestID(out.ResultMetadata)
		other := []*kms.Client{b.KMS, a.KMS, b.KMS}[i]
		d := within(t, "last use on the other replica", func() error {
			u, err := other.GetKeyLastUsage(ctx, &kms.GetKeyLastUsageInput{KeyId: id})
			if err != nil {
				return err
			}
			if u.KeyLastUsage == nil || u.KeyLastUsage.KmsRequestId == nil || *u.KeyLastUsage.KmsRequestId != rid {
				return fmt.Errorf("other replica answers %+v, want request %s", u.KeyLastUsage, rid)
			}
			return nil
		})
		t.Logf("use %d visible on the other replica after %v", i, d)
	}
}
