package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestFailoverAndLoginErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.activeCluster("us-east-1a", "us-east-1b")

	t.Run("wrong password counts toward lockout", func(t *testing.T) {
		for i := 1; i <= maxFailedLogins; i++ {
			if _, err := e.m.Login(ctx, id, "kmsuser", "WrongPass1"); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("attempt %d: %v", i, err)
			}
		}
		// Even the right password is refused now.
		if _, err := e.m.Login(ctx, id, "kmsuser", userPass); !errors.Is(err, ErrUserLockedOut) {
			t.Fatalf("after 5 failures: %v", err)
		}
		// The CO resets the password, which clears the lockout.
		if err := e.owner("change-password", "--cluster-id", id, "--type", "CU", "--username", "kmsuser", "--password", userPass, "--co-password", coPass); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		if _, err := e.m.Login(ctx, id, "alice", userPass); !errors.Is(err, ErrUserNotFound) {
			t.Fatal(err)
		}
	})

	s, err := e.m.Login(ctx, id, "kmsuser", userPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Login(ctx, id, "kmsuser", userPass); !errors.Is(err, ErrUserLoggedIn) {
		t.Fatalf("second login: %v", err)
	}
	if err := e.owner("delete-user", "--cluster-id", id, "--username", "kmsuser", "--co-password", coPass); err == nil {
		t.Fatal("deleted a logged-in user")
	}
	label := "arn:aws:kms:us-east-1:111122223333:key/failover"
	if _, err := s.GenerateKey(ctx, label); err != nil {
		t.Fatal(err)
	}
	iv, ct, err := s.Encrypt(ctx, label, []byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Kill one HSM process: a real HSM failure.
	e.m.mu.Lock()
	var victim *proc
	for _, p := range e.m.procs {
		if p.clusterID == id {
			victim = p
			break
		}
	}
	e.m.mu.Unlock()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	e.waitHSM(id, victim.hsmID, HSMDegraded)
	if st := e.cluster(id).State; st != ClusterActive {
		t.Fatalf("cluster with one live HSM is %s", st)
	}
	for i := range 20 {
		pt, err := s.Decrypt(ctx, label, iv, ct, nil)
		if err != nil || string(pt) != "hello" {
			t.Fatalf("call %d after the failure: %v", i, err)
		}
	}

	t.Run("password rotation", func(t *testing.T) {
		if err := s.ChangePassword(ctx, "bad pass"); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("bad new password: %v", err)
		}
		if err := s.ChangePassword(ctx, "Rotated123"); err != nil {
			t.Fatal(err)
		}
		if err := s.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Login(ctx, id, "kmsuser", userPass); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("old password after rotation: %v", err)
		}
		s2, err := e.m.Login(ctx, id, "kmsuser", "Rotated123")
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := s2.Decrypt(ctx, label, iv, ct, nil); err != nil || string(pt) != "hello" {
			t.Fatalf("decrypt after re-login: %v", err)
		}
		s2.Logout(ctx)
	})

	t.Run("user deleted", func(t *testing.T) {
		if err := e.owner("delete-user", "--cluster-id", id, "--username", "kmsuser", "--co-password", coPass); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Login(ctx, id, "kmsuser", "Rotated123"); !errors.Is(err, ErrUserNotFound) {
			t.Fatal(err)
		}
		if err := e.owner("create-user", "--cluster-id", id, "--username", "kmsuser", "--password", userPass, "--co-password", coPass); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no active HSM", func(t *testing.T) {
		for _, h := range e.cluster(id).HSMs {
			if h.State == HSMActive {
				if _, err := e.m.DeleteHsm(ctx, id, h.ID, "", ""); err != nil {
					t.Fatal(err)
				}
				e.waitHSM(id, h.ID, HSMDeleted)
			}
		}
		if st := e.cluster(id).State; st != ClusterDegraded {
			t.Fatalf("cluster with only a dead HSM is %s", st)
		}
		if _, err := e.m.Login(ctx, id, "kmsuser", userPass); !errors.Is(err, ErrNoActiveHSM) {
			t.Fatal(err)
		}
	})

	t.Run("restart respawns HSMs", func(t *testing.T) {
		h, err := e.m.CreateHsm(ctx, id, "us-east-1c", "")
		if err != nil {
			t.Fatal(err)
		}
		e.waitHSM(id, h.ID, HSMActive)
		e.m.Close()
		e.open()
		for _, h := range e.cluster(id).HSMs {
			if h.State != HSMActive {
				t.Fatalf("after restart %s is %s", h.ID, h.State)
			}
		}
		s, err := e.m.Login(ctx, id, "kmsuser", userPass)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := s.Decrypt(ctx, label, iv, ct, nil); err != nil || string(pt) != "hello" {
			t.Fatalf("decrypt after restart: %v", err)
		}
	})
}

func TestBackupRestore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.activeCluster("us-east-1a")
	s, err := e.m.Login(ctx, id, "kmsuser", userPass)
	if err != nil {
		t.Fatal(err)
	}
	label := "arn:aws:kms:us-east-1:111122223333:key/backup"
	s.GenerateKey(ctx, label)
	pt := []byte("backed-up secret")
	iv, ct, err := s.Encrypt(ctx, label, pt, []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.m.CreateBackup(ctx, id)
	if err != nil || b.State != BackupReady {
		t.Fatalf("CreateBackup: %v", err)
	}
	// The key is destroyed in the original; the backup still has it.
	s.DestroyKey(ctx, label)

	t.Run("delete and restore", func(t *testing.T) {
		d, err := e.m.DeleteBackup(ctx, b.ID)
		if err != nil || d.State != BackupPendingDeletion || d.DeleteTime.IsZero() {
			t.Fatalf("DeleteBackup: %+v %v", d, err)
		}
		if _, err := e.m.CreateCluster(ctx, CreateClusterInput{HsmType: "hsm2m.medium", SubnetIDs: []string{Subnets("us-east-1")[0].ID}, SourceBackupID: b.ID}); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("restore from a backup pending deletion: %v", err)
		}
		if _, err := e.m.DeleteBackup(ctx, b.ID); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("delete twice: %v", err)
		}
		r, err := e.m.RestoreBackup(ctx, b.ID)
		if err != nil || r.State != BackupReady {
			t.Fatalf("RestoreBackup: %v", err)
		}
	})

	arn := fmt.Sprintf("arn:aws:cloudhsm:us-east-1:111122223333:backup/%s", b.ID)
	c2, err := e.m.CreateCluster(ctx, CreateClusterInput{HsmType: "hsm2m.medium", SubnetIDs: []string{Subnets("us-east-1")[1].ID}, SourceBackupID: arn})
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitCluster(c2.ID, ClusterActive)
	orig := e.cluster(id)
	if got.SourceBackupID != b.ID || got.Certificates.ClusterCertificate == "" || got.Certificates.ClusterCertificate != orig.Certificates.ClusterCertificate {
		t.Fatal("restored cluster does not share the certificate")
	}
	h, err := e.m.CreateHsm(ctx, c2.ID, "us-east-1b", "")
	if err != nil {
		t.Fatal(err)
	}
	e.waitHSM(c2.ID, h.ID, HSMActive)
	s2, err := e.m.Login(ctx, c2.ID, "kmsuser", userPass)
	if err != nil {
		t.Fatal(err)
	}
	back, err := s2.Decrypt(ctx, label, iv, ct, []byte("ctx"))
	if err != nil || !bytes.Equal(back, pt) {
		t.Fatalf("restored cluster cannot decrypt: %v", err)
	}
	if _, err := s.Decrypt(ctx, label, iv, ct, []byte("ctx")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("original after destroy: %v", err)
	}
}
