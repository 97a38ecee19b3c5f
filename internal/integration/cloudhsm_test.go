package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudhsmv2"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// TestMain lets this test binary serve as the HSM daemon: the cluster
// manager (and `keyhold hsm` owner commands) re-execute os.Executable()
// with KEYHOLD_HSM_DAEMON=1 and the hidden hsm-daemon subcommand.
func TestMain(m *testing.M) {
	if os.Getenv("KEYHOLD_HSM_DAEMON") == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "hsm-daemon" {
			args = args[1:]
		}
		if err := hsm.DaemonCommand(context.Background(), args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("KEYHOLD_XKS_PROXY") == "1" {
		// `keyhold xks-proxy ...`, for tests that run the real proxy as a
		// process (keystore_conformance_test.go).
		os.Exit(cli.Main(append([]string{"xks-proxy"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	pgtest.Main(m)
}

var storeIDRe = regexp.MustCompile(`^cks-[0-9a-f]{17}$`)

// TestCloudHSMKeyStores follows the seeds (create the cluster, kmsuser, the
// store; connect; create keys; use them) and provokes, for real, every
// exception and connection error code AWS documents for CloudHSM key stores.
// Clusters are shared between cases where the cases allow: each one costs
// HSM processes and a CSR.
func TestCloudHSMKeyStores(t *testing.T) {
	t.Parallel()
	h := startCloudHSM(t)
	ctx := context.Background()
	const pwA, pwW = "kmsPswdA1234", "kmsPswdW1234"
	ids := h.newClusters(t,
		clusterSpec{azs: []string{zoneA, zoneB}, activate: true, kmsuser: pwA}, // the store's cluster
		clusterSpec{azs: []string{zoneA, zoneB}, activate: true},               // an unrelated cluster
		clusterSpec{azs: []string{zoneA, zoneB}, activate: true, kmsuser: pwW}, // for connection errors
		clusterSpec{azs: []string{zoneA, zoneB}},                               // INITIALIZED, never activated
		clusterSpec{azs: []string{zoneA}, activate: true},                      // one HSM only
	)
	clA, clC, clW, clInit, clOne := ids[0], ids[1], ids[2], ids[3], ids[4]
	// A cluster restored from A's backup shares its backup history.
	clRelated := h.restoredCluster(t, h.backupOf(t, clA), zoneA, zoneB)
	if a, r := h.cluster(t, clA).Certificates.ClusterCertificate, h.cluster(t, clRelated).Certificates.ClusterCertificate; aws.ToString(a) != aws.ToString(r) {
		t.Fatal("a cluster restored from a backup has another cluster certificate")
	}
	// Before Connect, kmsuser's password is the one we set.
	if err := h.owner("pkcs11-bench", "--cluster-id", clA, "--password", pwA, "--duration", "20ms"); err != nil {
		t.Fatalf("kmsuser cannot log in with its password before Connect: %v", err)
	}

	t.Run("create errors", func(t *testing.T) {
		_, err := h.createStore("nf", "cluster-234567abcdefg", pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterNotFoundException](t, err)
		_, err = h.createStore("na", clInit, pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterNotActiveException](t, err)
		_, err = h.createStore("one", clOne, pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterInvalidConfigurationException](t, err)
		h.addHSM(t, clOne, zoneA)
		h.waitHSMs(t, clOne, zoneA, zoneA)
		_, err = h.createStore("sameZone", clOne, pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterInvalidConfigurationException](t, err)
		_, err = h.createStore("anchor", clC, pwA, newTestCA(t).pem)
		wantErr[*kmstypes.IncorrectTrustAnchorException](t, err)
		_, err = h.createStore("bad", clC, "short", h.ca.pem)
		wantCode(t, err, "ValidationException")
	})

	var ks string
	t.Run("create", func(t *testing.T) {
		ks = h.mustCreateStore(t, "ExampleKeyStore", clA, pwA)
		if !storeIDRe.MatchString(ks) {
			t.Errorf("CustomKeyStoreId %q, want cks- and 17 hex digits", ks)
		}
		s := h.store(t, ks)
		if s.ConnectionState != kmstypes.ConnectionStateTypeDisconnected || s.ConnectionErrorCode != "" ||
			aws.ToString(s.CustomKeyStoreName) != "ExampleKeyStore" || aws.ToString(s.CloudHsmClusterId) != clA ||
			s.CustomKeyStoreType != kmstypes.CustomKeyStoreTypeAwsCloudhsm || s.CreationDate == nil ||
			strings.TrimSpace(aws.ToString(s.TrustAnchorCertificate)) != strings.TrimSpace(h.ca.pem) || s.XksProxyConfiguration != nil {
			t.Errorf("new store: %+v", s)
		}
		byName, err := h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreName: aws.String("ExampleKeyStore")})
		if err != nil || len(byName.CustomKeyStores) != 1 || aws.ToString(byName.CustomKeyStores[0].CustomKeyStoreId) != ks {
			t.Errorf("describe by name: %v %+v", err, byName)
		}
	})
	if ks == "" {
		t.Fatal("no store to go on with")
	}

	var ks2 string
	t.Run("uniqueness", func(t *testing.T) {
		// Every property equal to a DISCONNECTED store: its ID, no error.
		again, err := h.createStore("ExampleKeyStore", clA, pwA, h.ca.pem)
		if err != nil || again != ks {
			t.Errorf("identical CreateCustomKeyStore: %q, %v; want %s", again, err, ks)
		}
		_, err = h.createStore("ExampleKeyStore", clC, pwA, h.ca.pem)
		wantErr[*kmstypes.CustomKeyStoreNameInUseException](t, err)
		_, err = h.createStore("Other", clA, pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterInUseException](t, err)
		_, err = h.createStore("Other", clRelated, pwA, h.ca.pem)
		wantErr[*kmstypes.CloudHsmClusterInUseException](t, err)
		ks2 = h.mustCreateStore(t, "Second", clC, "anyPassword1")
		_, err = h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks2),
			NewCustomKeyStoreName: aws.String("ExampleKeyStore")})
		wantErr[*kmstypes.CustomKeyStoreNameInUseException](t, err)
	})

	t.Run("not found", func(t *testing.T) {
		const missing = "cks-0123456789abcdef0"
		_, err := h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreName: aws.String("NoSuchStore")})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(missing), NewCustomKeyStoreName: aws.String("x")})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		_, err = h.KMS.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8), CustomKeyStoreId: aws.String(missing)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
	})

	t.Run("disconnected store refuses keys", func(t *testing.T) {
		_, err := h.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		_, err = h.KMS.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8), CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		_, err = h.KMS.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
	})

	t.Run("update cluster", func(t *testing.T) {
		update := func(cluster string) error {
			_, err := h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks), CloudHsmClusterId: aws.String(cluster)})
			return err
		}
		wantErr[*kmstypes.CloudHsmClusterNotFoundException](t, update("cluster-234567abcdefg"))
		wantErr[*kmstypes.CloudHsmClusterNotRelatedException](t, update(clC))
		h.deleteHSMs(t, clRelated, zoneB)
		wantErr[*kmstypes.CloudHsmClusterInvalidConfigurationException](t, update(clRelated))
		h.addHSM(t, clRelated, zoneA)
		h.waitHSMs(t, clRelated, zoneA, zoneA)
		wantErr[*kmstypes.CloudHsmClusterInvalidConfigurationException](t, update(clRelated))
		h.addHSM(t, clRelated, zoneC)
		h.waitHSMs(t, clRelated, zoneA, zoneA, zoneC)
		if err := update(clRelated); err != nil {
			t.Fatalf("update to a cluster restored from the store's cluster backup: %v", err)
		}
		if got := aws.ToString(h.store(t, ks).CloudHsmClusterId); got != clRelated {
			t.Errorf("CloudHsmClusterId %s after update, want %s", got, clRelated)
		}
		if err := update(clA); err != nil {
			t.Fatalf("update back: %v", err)
		}
	})

	t.Run("connect", func(t *testing.T) {
		h.mustConnect(t, ks)
		// Connecting a CONNECTED store is a no-op.
		if _, err := h.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)}); err != nil {
			t.Errorf("connect while CONNECTED: %v", err)
		}
		// KMS rotated kmsuser's password: the one we gave no longer logs in.
		err := h.owner("pkcs11-bench", "--cluster-id", clA, "--password", pwA, "--duration", "20ms")
		if !errors.Is(err, hsm.ErrInvalidCredentials) {
			t.Errorf("original kmsuser password after Connect: %v, want invalid credentials (rotated)", err)
		}
		_, err = h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks), CloudHsmClusterId: aws.String(clRelated)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		_, err = h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks), KeyStorePassword: aws.String("newPassword1")})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		_, err = h.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		// Only the name may change while CONNECTED.
		for _, name := range []string{"Renamed", "ExampleKeyStore"} {
			if _, err := h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks), NewCustomKeyStoreName: aws.String(name)}); err != nil {
				t.Fatalf("rename while CONNECTED: %v", err)
			}
			if got := aws.ToString(h.store(t, ks).CustomKeyStoreName); got != name {
				t.Errorf("name %q, want %q", got, name)
			}
		}
	})

	var keyARN string
	var oldCiphertext []byte
	ec := map[string]string{"purpose": "cloudhsm-test"}
	plaintext := []byte("held in the cluster")
	t.Run("keys", func(t *testing.T) {
		out, err := h.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(ks), Description: aws.String("in the cluster")})
		if err != nil {
			t.Fatalf("CreateKey in the store: %v", err)
		}
		md := out.KeyMetadata
		keyARN = aws.ToString(md.Arn)
		if md.Origin != kmstypes.OriginTypeAwsCloudhsm || aws.ToString(md.CustomKeyStoreId) != ks || aws.ToString(md.CloudHsmClusterId) != clA ||
			md.KeyState != kmstypes.KeyStateEnabled || md.KeySpec != kmstypes.KeySpecSymmetricDefault || md.KeyUsage != kmstypes.KeyUsageTypeEncryptDecrypt {
			t.Errorf("CreateKey metadata: %+v", md)
		}
		d, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
		if err != nil || d.KeyMetadata.Origin != kmstypes.OriginTypeAwsCloudhsm || aws.ToString(d.KeyMetadata.CustomKeyStoreId) != ks ||
			aws.ToString(d.KeyMetadata.CloudHsmClusterId) != clA {
			t.Errorf("DescribeKey: %v %+v", err, d)
		}
		enc, err := h.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyARN), Plaintext: plaintext, EncryptionContext: ec})
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		oldCiphertext = enc.CiphertextBlob
		dec, err := h.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
		if err != nil || !bytes.Equal(dec.Plaintext, plaintext) || aws.ToString(dec.KeyId) != keyARN {
			t.Fatalf("Decrypt: %v %q %s", err, dec.Plaintext, aws.ToString(dec.KeyId))
		}
		_, err = h.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"purpose": "other"}})
		wantErr[*kmstypes.InvalidCiphertextException](t, err)
		dk, err := h.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyARN), KeySpec: kmstypes.DataKeySpecAes256})
		if err != nil || len(dk.Plaintext) != 32 {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		dkd, err := h.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob})
		if err != nil || !bytes.Equal(dkd.Plaintext, dk.Plaintext) {
			t.Fatalf("data key decrypt: %v", err)
		}
		r, err := h.KMS.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(64), CustomKeyStoreId: aws.String(ks)})
		if err != nil || len(r.Plaintext) != 64 {
			t.Fatalf("GenerateRandom from the cluster: %v", err)
		}
	})
	if keyARN == "" {
		t.Fatal("no key to go on with")
	}

	t.Run("CreateKey needs two HSMs in two zones", func(t *testing.T) {
		h.deleteHSMs(t, clA, zoneB)
		_, err := h.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CloudHsmClusterInvalidConfigurationException](t, err)
		// The remaining HSM still serves the existing key.
		if _, err := h.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyARN), Plaintext: plaintext}); err != nil {
			t.Errorf("Encrypt with one HSM left: %v", err)
		}
		h.addHSM(t, clA, zoneB)
		h.waitHSMs(t, clA, zoneA, zoneB)
		if _, err := h.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyARN), Plaintext: plaintext}); err != nil {
			t.Errorf("Encrypt after adding an HSM back: %v", err)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		h.disconnect(t, ks)
		d, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
		if err != nil || d.KeyMetadata.KeyState != kmstypes.KeyStateUnavailable {
			t.Errorf("DescribeKey while disconnected: %v %+v, want Unavailable", err, d)
		}
		_, err = h.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyARN), Plaintext: plaintext})
		wantErr[*kmstypes.KMSInvalidStateException](t, err)
		_, err = h.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: oldCiphertext, EncryptionContext: ec})
		wantErr[*kmstypes.KMSInvalidStateException](t, err)
		_, err = h.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyARN), NumberOfBytes: aws.Int32(32)})
		wantErr[*kmstypes.KMSInvalidStateException](t, err)
		_, err = h.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreHasCMKsException](t, err)
	})

	t.Run("reconnect", func(t *testing.T) {
		h.mustConnect(t, ks)
		d, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
		if err != nil || d.KeyMetadata.KeyState != kmstypes.KeyStateEnabled {
			t.Errorf("DescribeKey after reconnect: %v %+v, want Enabled", err, d)
		}
		dec, err := h.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: oldCiphertext, EncryptionContext: ec})
		if err != nil || !bytes.Equal(dec.Plaintext, plaintext) {
			t.Fatalf("old ciphertext after reconnect: %v", err)
		}
	})

	t.Run("pending deletion keeps the store", func(t *testing.T) {
		if _, err := h.KMS.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyARN), PendingWindowInDays: aws.Int32(7)}); err != nil {
			t.Fatal(err)
		}
		h.disconnect(t, ks)
		d, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
		if err != nil || d.KeyMetadata.KeyState != kmstypes.KeyStatePendingDeletion {
			t.Errorf("DescribeKey of a key pending deletion in a disconnected store: %v %+v, want PendingDeletion", err, d)
		}
		_, err = h.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)})
		wantErr[*kmstypes.CustomKeyStoreHasCMKsException](t, err)
	})

	// Connection errors, one store on cluster W, in the order an owner
	// would meet and fix them.
	var ksW string
	passwordW := pwW
	t.Run("INVALID_CREDENTIALS", func(t *testing.T) {
		ksW = h.mustCreateStore(t, "Troubled", clW, "WrongPassword1")
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeInvalidCredentials)
		_, err := h.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ksW)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		_, err = h.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(ksW)})
		wantErr[*kmstypes.CustomKeyStoreInvalidStateException](t, err)
		h.disconnect(t, ksW)
	})
	if ksW == "" {
		t.Fatal("no store for the connection errors")
	}
	t.Run("USER_LOCKED_OUT", func(t *testing.T) {
		// CloudHSM locks a crypto user out after 5 failed logins; the first
		// connect above was one.
		for i := 2; i <= 5; i++ {
			h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeInvalidCredentials)
			h.disconnect(t, ksW)
		}
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeUserLockedOut)
		h.disconnect(t, ksW)
		// The fix: a CO sets a new password, KMS is told, reconnect.
		passwordW = "kmsPswdW5678"
		if err := h.owner("change-password", "--cluster-id", clW, "--type", "CU", "--username", "kmsuser",
			"--password", passwordW, "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
		if _, err := h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ksW), KeyStorePassword: aws.String(passwordW)}); err != nil {
			t.Fatalf("update the password: %v", err)
		}
		h.mustConnect(t, ksW)
		h.disconnect(t, ksW)
	})
	t.Run("USER_LOGGED_IN", func(t *testing.T) {
		// kmsuser logged in by another client of the cluster.
		reg := h.registry()
		setLoggedIn := func(by string) {
			if _, err := reg.UpdateCluster(ctx, clW, func(r *hsm.ClusterRecord) error { r.User.LoggedInBy = by; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		setLoggedIn("cloudhsm_mgmt_util/" + t.Name())
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeUserLoggedIn)
		h.disconnect(t, ksW)
		setLoggedIn("")
		h.mustConnect(t, ksW)
		h.disconnect(t, ksW)
	})
	t.Run("USER_NOT_FOUND", func(t *testing.T) {
		if err := h.owner("delete-user", "--cluster-id", clW, "--username", "kmsuser", "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeUserNotFound)
		h.disconnect(t, ksW)
		passwordW = "kmsPswdW9012"
		if err := h.owner("create-user", "--cluster-id", clW, "--type", "CU", "--username", "kmsuser",
			"--password", passwordW, "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
		if _, err := h.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(ksW), KeyStorePassword: aws.String(passwordW)}); err != nil {
			t.Fatalf("update the password: %v", err)
		}
	})
	t.Run("INSUFFICIENT_CLOUDHSM_HSMS", func(t *testing.T) {
		h.deleteHSMs(t, clW, zoneA, zoneB)
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeInsufficientCloudhsmHsms)
		h.disconnect(t, ksW)
	})
	t.Run("CLUSTER_NOT_FOUND", func(t *testing.T) {
		if _, err := h.HSM.DeleteCluster(ctx, &cloudhsmv2.DeleteClusterInput{ClusterId: aws.String(clW)}); err != nil {
			t.Fatal(err)
		}
		eventually(t, clW+" deleted", func() (bool, error) {
			_, err := h.HSM.DescribeClusters(ctx, &cloudhsmv2.DescribeClustersInput{Filters: map[string][]string{"clusterIds": {clW}}})
			return err == nil && h.cluster(t, clW).State == "DELETED", nil
		})
		h.connectFails(t, ksW, kmstypes.ConnectionErrorCodeTypeClusterNotFound)
		h.disconnect(t, ksW)
	})

	t.Run("limit and paging", func(t *testing.T) {
		all := h.allStores(t, 0)
		// The 10-store quota: fill it with stores on fresh clusters, then
		// an 11th on another valid cluster.
		need := 10 - len(all)
		if need < 0 {
			t.Fatalf("%d stores already", len(all))
		}
		specs := make([]clusterSpec, need+1)
		for i := range specs {
			specs[i] = clusterSpec{azs: []string{zoneA, zoneB}, activate: true}
		}
		fresh := h.newClusters(t, specs...)
		for i, cl := range fresh[:need] {
			h.mustCreateStore(t, fmt.Sprintf("Filler%02d", i), cl, "anyPassword1")
		}
		_, err := h.createStore("Eleventh", fresh[need], "anyPassword1", h.ca.pem)
		wantErr[*kmstypes.LimitExceededException](t, err)

		// Paging: Limit and Marker walk all 10, each once.
		want := h.allStores(t, 0)
		if len(want) != 10 {
			t.Fatalf("%d stores, want 10", len(want))
		}
		got := h.allStores(t, 3)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("paged with Limit=3: %v, want %v", got, want)
		}
		_, err = h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{Marker: aws.String("!!!not-a-marker")})
		wantErr[*kmstypes.InvalidMarkerException](t, err)
	})

	t.Run("InvalidMarker for a marker KMS never issued", func(t *testing.T) {
		// Markers are opaque: one that no response carried is not valid,
		// even when it happens to decode.
		_, err := h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{Marker: aws.String("not-a-marker")})
		wantErr[*kmstypes.InvalidMarkerException](t, err)
	})

	t.Run("delete", func(t *testing.T) {
		// ks2 never had keys: it goes, its cluster stays.
		if _, err := h.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks2)}); err != nil {
			t.Fatalf("DeleteCustomKeyStore: %v", err)
		}
		_, err := h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(ks2)})
		wantErr[*kmstypes.CustomKeyStoreNotFoundException](t, err)
		if st := h.cluster(t, clC).State; st != "ACTIVE" {
			t.Errorf("cluster after its store was deleted: %s", st)
		}
	})

	t.Run("secrets never returned", func(t *testing.T) {
		secrets := []string{pwA, pwW, "kmsPswdW5678", "kmsPswdW9012", "WrongPassword1", "anyPassword1", coPassword}
		h.rec.assertNeverReturned(t, secrets...)
		// Nor stored in clear: database, cluster records, tokens, logs.
		err := filepath.WalkDir(h.dataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err // directories, and the HSM daemons' sockets
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("a password is stored in clear in %s", path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// allStores lists every store's ID, limit at a time (0: no Limit), and
// checks Truncated/NextMarker on the way.
func (h *hsmEnv) allStores(t *testing.T, limit int32) []string {
	t.Helper()
	var ids []string
	in := &kms.DescribeCustomKeyStoresInput{}
	if limit > 0 {
		in.Limit = aws.Int32(limit)
	}
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("DescribeCustomKeyStores pages do not end")
		}
		out, err := h.KMS.DescribeCustomKeyStores(context.Background(), in)
		if err != nil {
			t.Fatalf("DescribeCustomKeyStores: %v", err)
		}
		if limit > 0 && len(out.CustomKeyStores) > int(limit) {
			t.Fatalf("%d stores in a page with Limit %d", len(out.CustomKeyStores), limit)
		}
		for _, s := range out.CustomKeyStores {
			ids = append(ids, aws.ToString(s.CustomKeyStoreId))
		}
		if !out.Truncated {
			if out.NextMarker != nil {
				t.Errorf("NextMarker %q on the last page", aws.ToString(out.NextMarker))
			}
			return ids
		}
		if aws.ToString(out.NextMarker) == "" {
			t.Fatal("Truncated without NextMarker")
		}
		in.Marker = out.NextMarker
	}
}
