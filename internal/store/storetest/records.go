package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

func principals(t *testing.T, s store.Store) {
	a := "111122223333"
	now := time.Unix(1700000000, 0).UTC()
	u := store.Principal{ARN: "arn:aws:iam::" + a + ":user/u", AccountID: a, Type: "user", Name: "u", ID: "AIDAU", Created: now,
		Tags: []store.Tag{{Key: "team", Value: "x"}}}
	r := store.Principal{ARN: "arn:aws:iam::" + a + ":role/r", AccountID: a, Type: "role", Name: "r", ID: "AROAR", TrustPolicy: "{}", Created: now}
	for _, p := range []store.Principal{u, r} {
		if err := s.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreatePrincipal(ctx, u); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate principal: %v", err)
	}
	got, err := s.GetPrincipal(ctx, u.ARN)
	if err != nil || got.ID != "AIDAU" || len(got.Tags) != 1 || got.Tags[0].Value != "x" || !got.Created.Equal(now) {
		t.Fatalf("GetPrincipal = %+v, %v", got, err)
	}
	r.TrustPolicy, r.Tags = `{"Version":"2012-10-17"}`, []store.Tag{{Key: "k", Value: "v"}}
	if err := s.UpdatePrincipal(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetPrincipal(ctx, r.ARN); got.TrustPolicy != r.TrustPolicy || len(got.Tags) != 1 {
		t.Fatalf("UpdatePrincipal stored %+v", got)
	}
	if err := s.UpdatePrincipal(ctx, store.Principal{ARN: "arn:aws:iam::" + a + ":user/none"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of an unknown principal: %v", err)
	}
	if l, err := s.ListPrincipals(ctx, a); err != nil || len(l) != 2 || l[0].ARN > l[1].ARN {
		t.Fatalf("ListPrincipals = %v, %v", l, err)
	}
	for _, n := range []string{"p2", "p1"} {
		if err := s.PutPrincipalPolicy(ctx, store.PrincipalPolicy{PrincipalARN: u.ARN, Name: n, Document: "doc-" + n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPrincipalPolicy(ctx, store.PrincipalPolicy{PrincipalARN: u.ARN, Name: "p1", Document: "replaced"}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.ListPrincipalPolicies(ctx, u.ARN)
	if err != nil || len(ps) != 2 || ps[0].Name != "p1" || ps[0].Document != "replaced" {
		t.Fatalf("ListPrincipalPolicies = %v, %v", ps, err)
	}
	if err := s.DeletePrincipalPolicy(ctx, u.ARN, "p2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePrincipalPolicy(ctx, u.ARN, "p2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete a policy twice: %v", err)
	}
	for _, id := range []string{"AKIA2", "AKIA3"} {
		if err := s.PutAccessKey(ctx, store.AccessKey{ID: id, AccountID: a, PrincipalARN: u.ARN, SealedSecret: []byte{1}, Active: true, Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	sess := store.AccessKey{ID: "ASIA1", AccountID: a, PrincipalARN: "arn:aws:sts::" + a + ":assumed-role/r/s", SealedSecret: []byte{2},
		Active: true, Created: now, SessionTokenHash: []byte{3}, RoleARN: r.ARN, Expires: now.Add(time.Hour)}
	if err := s.PutAccessKey(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetAccessKey(ctx, "ASIA1"); err != nil || got.RoleARN != r.ARN || !got.Expires.Equal(sess.Expires) || string(got.SessionTokenHash) != "\x03" {
		t.Fatalf("temporary credential = %+v, %v", got, err)
	}
	if l, err := s.ListAccessKeys(ctx, u.ARN); err != nil || len(l) != 2 {
		t.Fatalf("ListAccessKeys = %v, %v", l, err)
	}
	if err := s.DeleteAccessKey(ctx, "AKIA3"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccessKey(ctx, "AKIA3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete an access key twice: %v", err)
	}
	// Deleting a role takes its sessions' credentials with it; deleting a
	// user its policies and keys.
	if err := s.DeletePrincipal(ctx, r.ARN); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessKey(ctx, "ASIA1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session credential of a deleted role: %v", err)
	}
	if err := s.DeletePrincipal(ctx, u.ARN); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.ListPrincipalPolicies(ctx, u.ARN); len(l) != 0 {
		t.Fatalf("policies of a deleted user: %v", l)
	}
	if l, _ := s.ListAccessKeys(ctx, u.ARN); len(l) != 0 {
		t.Fatalf("access keys of a deleted user: %v", l)
	}
	if err := s.DeletePrincipal(ctx, u.ARN); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete a principal twice: %v", err)
	}
}

func externalKeyUnique(t *testing.T, s store.Store) {
	a := "111122223333"
	x := key(a, "x1")
	x.CustomKeyStoreID, x.XksKeyID = "cks-1", "ext-1"
	if err := s.CreateKey(ctx, x); err != nil {
		t.Fatal(err)
	}
	y := key(a, "x2")
	y.CustomKeyStoreID, y.XksKeyID = "cks-1", "ext-1"
	if err := s.CreateKey(ctx, y); !errors.Is(err, store.ErrExternalKeyInUse) {
		t.Fatalf("a second key on the same external key: %v, want ErrExternalKeyInUse", err)
	}
	y.CustomKeyStoreID = "cks-2"
	if err := s.CreateKey(ctx, y); err != nil {
		t.Fatalf("the same external key id in another store: %v", err)
	}
	// Keys without an external key never collide.
	for _, id := range []string{"s1", "s2"} {
		k := key(a, id)
		k.CustomKeyStoreID = "cks-3"
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent creates: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := key(a, fmt.Sprintf("race%d", i))
			k.CustomKeyStoreID, k.XksKeyID = "cks-9", "ext-race"
			if err := s.CreateKey(ctx, k); err == nil {
				wins <- k.ID
			} else if !errors.Is(err, store.ErrExternalKeyInUse) {
				t.Errorf("racing create: %v", err)
			}
		}(i)
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d concurrent creates on one external key succeeded, want 1", n)
	}
}

func backupHistoryUnique(t *testing.T, s store.Store) {
	base := store.CustomKeyStore{AccountID: "111122223333", Region: R, Type: "AWS_CLOUDHSM", Created: time.Unix(1700000000, 0).UTC(),
		Config: []byte(`{}`), ConnectionState: "DISCONNECTED"}
	c1 := base
	c1.ID, c1.Name, c1.BackupHistory = "cks-1", "one", "h1"
	if err := s.CreateCustomKeyStore(ctx, c1); err != nil {
		t.Fatal(err)
	}
	c2 := base
	c2.ID, c2.Name, c2.BackupHistory = "cks-2", "two", "h1"
	if err := s.CreateCustomKeyStore(ctx, c2); !errors.Is(err, store.ErrBackupHistoryInUse) {
		t.Fatalf("a second store on one backup history: %v, want ErrBackupHistoryInUse", err)
	}
	// In another account too: a cluster backs one store.
	c2.AccountID = "444455556666"
	if err := s.CreateCustomKeyStore(ctx, c2); !errors.Is(err, store.ErrBackupHistoryInUse) {
		t.Fatalf("a store in another account on the same backup history: %v", err)
	}
	c2.AccountID, c2.BackupHistory = "111122223333", "h2"
	if err := s.CreateCustomKeyStore(ctx, c2); err != nil {
		t.Fatal(err)
	}
	x1, x2 := base, base
	x1.ID, x1.Name, x1.Type = "cks-3", "x1", "EXTERNAL_KEY_STORE"
	x2.ID, x2.Name, x2.Type = "cks-4", "x2", "EXTERNAL_KEY_STORE"
	if err := s.CreateCustomKeyStore(ctx, x1); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCustomKeyStore(ctx, x2); err != nil {
		t.Fatalf("two stores without a backup history: %v", err)
	}
	got, _ := s.GetCustomKeyStore(ctx, "111122223333", "cks-2")
	if got.BackupHistory != "h2" {
		t.Fatalf("BackupHistory = %q", got.BackupHistory)
	}
	got.BackupHistory = "h1"
	if _, err := s.UpdateCustomKeyStore(ctx, got); !errors.Is(err, store.ErrBackupHistoryInUse) {
		t.Fatalf("update onto a used backup history: %v", err)
	}
	if err := s.DeleteCustomKeyStore(ctx, "111122223333", "cks-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateCustomKeyStore(ctx, got); err != nil {
		t.Fatalf("update onto a freed backup history: %v", err)
	}
}

func vpcEndpointServices(t *testing.T, s store.Store) {
	v := store.VPCEndpointService{ServiceName: "com.amazonaws.vpce.us-east-1.vpce-svc-b", Endpoint: "https://127.0.0.1:8443",
		PrivateDNSName: "xks.example", PrivateDNSVerified: true, AllowedPrincipals: []string{"cks.kms.us-east-1.amazonaws.com"},
		AvailabilityZones: []string{"us-east-1a", "us-east-1b"}}
	if err := s.PutVPCEndpointService(ctx, v); err != nil {
		t.Fatal(err)
	}
	w := v
	w.ServiceName, w.Owner, w.AcceptanceRequired = "com.amazonaws.vpce.us-east-1.vpce-svc-a", "444455556666", true
	if err := s.PutVPCEndpointService(ctx, w); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetVPCEndpointService(ctx, v.ServiceName)
	if err != nil || got.Endpoint != v.Endpoint || !got.PrivateDNSVerified || len(got.AvailabilityZones) != 2 || got.AllowedPrincipals[0] != v.AllowedPrincipals[0] {
		t.Fatalf("GetVPCEndpointService = %+v, %v", got, err)
	}
	v.Endpoint = "https://127.0.0.1:9443"
	if err := s.PutVPCEndpointService(ctx, v); err != nil {
		t.Fatal(err)
	}
	l, err := s.ListVPCEndpointServices(ctx)
	if err != nil || len(l) != 2 || l[0].ServiceName != w.ServiceName || l[0].Owner != w.Owner || !l[0].AcceptanceRequired || l[1].Endpoint != v.Endpoint {
		t.Fatalf("ListVPCEndpointServices = %+v, %v", l, err)
	}
	if err := s.DeleteVPCEndpointService(ctx, w.ServiceName); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVPCEndpointService(ctx, w.ServiceName); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := s.GetVPCEndpointService(ctx, w.ServiceName); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted service: %v", err)
	}
}

func hsmRecords(t *testing.T, s store.Store) {
	t0 := time.Unix(1700000000, 0).UTC()
	c2 := store.HSMCluster{ID: "cluster-b", State: "UNINITIALIZED", Created: t0.Add(time.Second), Record: []byte("rec-b")}
	c1 := store.HSMCluster{ID: "cluster-a", State: "CREATE_IN_PROGRESS", Created: t0, Record: []byte("rec-a")}
	for _, c := range []store.HSMCluster{c2, c1} {
		if err := s.CreateHSMCluster(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateHSMCluster(ctx, c1); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate cluster: %v", err)
	}
	got, err := s.GetHSMCluster(ctx, "cluster-a")
	if err != nil || got.State != c1.State || string(got.Record) != "rec-a" || !got.Created.Equal(t0) {
		t.Fatalf("GetHSMCluster = %+v, %v", got, err)
	}
	if _, err := s.GetHSMCluster(ctx, "cluster-z"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown cluster: %v", err)
	}
	up, err := s.UpdateHSMCluster(ctx, "cluster-a", func(c *store.HSMCluster) error {
		c.State, c.Record = "ACTIVE", append(c.Record, '!')
		return nil
	})
	if err != nil || up.State != "ACTIVE" || string(up.Record) != "rec-a!" {
		t.Fatalf("UpdateHSMCluster = %+v, %v", up, err)
	}
	boom := errors.New("no")
	if _, err := s.UpdateHSMCluster(ctx, "cluster-a", func(c *store.HSMCluster) error { c.State = "DELETED"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateHSMCluster with a failing fn: %v", err)
	}
	if got, _ := s.GetHSMCluster(ctx, "cluster-a"); got.State != "ACTIVE" {
		t.Fatalf("a failed update was stored: %+v", got)
	}
	if _, err := s.UpdateHSMCluster(ctx, "cluster-z", func(*store.HSMCluster) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of an unknown cluster: %v", err)
	}
	l, err := s.ListHSMClusters(ctx)
	if err != nil || len(l) != 2 || l[0].ID != "cluster-a" || l[1].ID != "cluster-b" {
		t.Fatalf("ListHSMClusters = %v, %v", l, err)
	}

	b := store.HSMBackup{ID: "backup-a", ClusterID: "cluster-a", State: "CREATE_IN_PROGRESS", Created: t0, Record: []byte("b")}
	if err := s.CreateHSMBackup(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateHSMBackup(ctx, b); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate backup: %v", err)
	}
	if _, err := s.UpdateHSMBackup(ctx, "backup-a", func(r *store.HSMBackup) error { r.State = "READY"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetHSMBackup(ctx, "backup-a"); err != nil || got.State != "READY" || got.ClusterID != "cluster-a" {
		t.Fatalf("GetHSMBackup = %+v, %v", got, err)
	}
	if _, err := s.GetHSMBackup(ctx, "backup-z"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown backup: %v", err)
	}
	if _, err := s.UpdateHSMBackup(ctx, "backup-z", func(*store.HSMBackup) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of an unknown backup: %v", err)
	}
	if l, err := s.ListHSMBackups(ctx); err != nil || len(l) != 1 {
		t.Fatalf("ListHSMBackups = %v, %v", l, err)
	}
}

func transactions(t *testing.T, s store.Store) {
	a := "111122223333"
	boom := errors.New("abort")
	err := s.Tx(ctx, func(tx store.Store) error {
		if err := tx.CreateKey(ctx, key(a, "t1")); err != nil {
			return err
		}
		if err := tx.CreateAlias(ctx, store.Alias{AccountID: a, Region: R, Name: "alias/t1", KeyID: "t1"}); err != nil {
			return err
		}
		if _, err := tx.GetKey(ctx, a, R, "t1"); err != nil {
			return fmt.Errorf("a transaction does not see its own write: %w", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v, want fn's error", err)
	}
	if _, err := s.GetKey(ctx, a, R, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back key exists: %v", err)
	}
	if _, err := s.GetAlias(ctx, a, R, "alias/t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back alias exists: %v", err)
	}
	err = s.Tx(ctx, func(tx store.Store) error {
		if err := tx.CreateKey(ctx, key(a, "t1")); err != nil {
			return err
		}
		// A method that has its own transaction joins this one.
		if err := tx.DeleteKey(ctx, a, R, "t1"); err != nil {
			return err
		}
		return tx.CreateKey(ctx, key(a, "t2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, a, R, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("t1 deleted in the transaction: %v", err)
	}
	if _, err := s.GetKey(ctx, a, R, "t2"); err != nil {
		t.Fatalf("committed key: %v", err)
	}
}

// concurrentUpdates runs read-modify-writes of one cluster record from
// many goroutines: none may be lost.
func concurrentUpdates(t *testing.T, s store.Store) {
	if err := s.CreateHSMCluster(ctx, store.HSMCluster{ID: "cluster-c", State: "ACTIVE", Created: time.Unix(1, 0), Record: nil}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UpdateHSMCluster(ctx, "cluster-c", func(c *store.HSMCluster) error {
				c.Record = append(c.Record, 'x')
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _ := s.GetHSMCluster(ctx, "cluster-c"); len(got.Record) != 16 {
		t.Fatalf("%d of 16 concurrent updates stored", len(got.Record))
	}
}
