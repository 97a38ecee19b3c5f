package hsm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestHSMNetwork runs a second Manager as another replica would (its own
// data directory, the same records and root key): it reaches the cluster
// the first one runs over TCP with mutual TLS at the HSMs' ENI IPs, holds
// its own session of the shared login, and follows the HSMs when the
// first replica restarts them.
func TestHSMNetwork(t *testing.T) {
	a := newEnv(t)
	ctx := context.Background()
	id := a.activeCluster("us-east-1a", "us-east-1b")

	rec, err := a.m.reg.GetCluster(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	loopback := netip.MustParsePrefix("127.100.0.0/16")
	for _, h := range a.cluster(id).HSMs {
		ip, err := netip.ParseAddr(h.EniIP)
		if err != nil || !loopback.Contains(ip) {
			t.Fatalf("HSM %s EniIp %q is not on the default network", h.ID, h.EniIP)
		}
	}
	if rec.NetworkCA == nil || rec.NetworkCA.CertPEM == "" || len(rec.NetworkCA.SealedKey) == 0 {
		t.Fatal("the cluster has no network CA")
	}
	addr := func(h HSMRecord) string { return net.JoinHostPort(h.EniIP, strconv.Itoa(h.Port)) }

	t.Run("a client without a certificate of the cluster CA is refused", func(t *testing.T) {
		h := rec.HSMs[0]
		is, err := a.m.issuer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// No client certificate.
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: is.pool, ServerName: h.ID}
		if err := tlsExchange(addr(h), cfg); err == nil {
			t.Fatal("a client without a certificate talked to the HSM")
		}
		// A certificate of another CA.
		other, err := makeNetworkCA(a.m.iss.sealer, "cluster-othercluster1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ois, err := openNetworkCA(a.m.iss.sealer, "cluster-othercluster1", other, "intruder", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: is.pool, ServerName: h.ID, Certificates: []tls.Certificate{ois.client}}
		if err := tlsExchange(addr(h), cfg); err == nil {
			t.Fatal("a client with another CA's certificate talked to the HSM")
		}
		// And the client refuses an HSM that is not the one it dialled.
		cfg = is.clientTLS("hsm-notthisone11")
		if err := tlsExchange(addr(h), cfg); err == nil {
			t.Fatal("the client accepted the certificate of another HSM")
		}
		if err := tlsExchange(addr(h), is.clientTLS(h.ID)); err != nil {
			t.Fatalf("the cluster's own client: %v", err)
		}
	})

	t.Run("peers from before the multiplexed protocol speak gob", func(t *testing.T) {
		h := rec.HSMs[0]
		is, err := a.m.issuer(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// An older keyhold (no ALPN) to this daemon.
		old := is.clientTLS(h.ID)
		old.NextProtos = nil
		if err := tlsExchange(addr(h), old); err != nil {
			t.Fatalf("a client without ALPN: %v", err)
		}
		// This keyhold to an older daemon (no ALPN).
		bundle, err := is.serverBundle("hsm-olddaemon0001", net.ParseIP("127.0.0.1"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		scfg, err := readServerBundle(bufio.NewReader(bytes.NewReader(bundle)))
		if err != nil {
			t.Fatal(err)
		}
		scfg.NextProtos = nil
		ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go serveConn(conn, "old", func(r *request, _ string) *response { return &response{Text: "gob"} })
			}
		}()
		cl := newTLSClient(ln.Addr().String(), is.clientTLS("hsm-olddaemon0001"))
		defer cl.close()
		resp, err := cl.call(ctx, &request{Op: opPing})
		if err != nil || resp.Text != "gob" {
			t.Fatalf("ping of an older daemon: %v %v", resp, err)
		}
		if cl.mux != nil || !cl.noMux {
			t.Error("the client did not fall back to gob")
		}
	})

	// Replica B: another data directory, the same database and root key.
	st, closeStore, err := openRecords(ctx, a.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	b, err := Open(ctx, Config{Dir: filepath.Join(t.TempDir(), "hsm"), Region: "us-east-1", Records: st, Sealer: a.m.cfg.Sealer,
		TransitionDelay: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if n := len(b.procs); n != 0 {
		t.Fatalf("replica B started %d HSM daemons of a cluster it does not own", n)
	}

	const store = "kms:111122223333/cks-1234567890abcdef0"
	sa, err := a.m.LoginAs(ctx, id, "kmsuser", userPass, store)
	if err != nil {
		t.Fatal(err)
	}
	// A rotates the password (through one of the two HSMs), as a connect
	// does; B joins with the new one, whichever HSM it meets first.
	const rotated = "Rotated4567"
	if err := sa.ChangePassword(ctx, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoginAs(ctx, id, "kmsuser", userPass, store); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("joining with the old password: %v", err)
	}
	sb, err := b.LoginAs(ctx, id, "kmsuser", rotated, store)
	if err != nil {
		t.Fatalf("replica B joining the store's login: %v", err)
	}
	if len(sb.eps) != 2 {
		t.Fatalf("replica B's session is on %d HSMs, want 2", len(sb.eps))
	}
	if _, err := b.Login(ctx, id, "kmsuser", userPass); !errors.Is(err, ErrUserLoggedIn) {
		t.Fatalf("an exclusive login while the store is logged in: %v", err)
	}
	if _, err := b.LoginAs(ctx, id, "kmsuser", userPass, "kms:111122223333/cks-another00000000"); !errors.Is(err, ErrUserLoggedIn) {
		t.Fatalf("another store's login: %v", err)
	}
	label := "arn:aws:kms:us-east-1:111122223333:key/network"
	if _, err := sa.GenerateKey(ctx, label); err != nil {
		t.Fatal(err)
	}
	iv, ct, err := sb.Encrypt(ctx, label, []byte("over the network"), []byte("aad"))
	if err != nil {
		t.Fatalf("Encrypt through replica B: %v", err)
	}
	if pt, err := sa.Decrypt(ctx, label, iv, ct, []byte("aad")); err != nil || string(pt) != "over the network" {
		t.Fatalf("Decrypt through replica A: %q %v", pt, err)
	}
	if len(sb.eps) != 2 {
		t.Fatalf("replica B uses %d HSMs, want 2", len(sb.eps))
	}

	// A restart of replica A respawns the HSMs: B's session logs in again.
	a.m.Close()
	a.open()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pt, err := sb.Decrypt(ctx, label, iv, ct, []byte("aad"))
		if err == nil && string(pt) == "over the network" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B after replica A restarted its HSMs: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A new HSM made through replica B is started by A (which owns the
	// token) and used by B's session.
	h, err := b.CreateHsm(ctx, id, "us-east-1c", "")
	if err != nil {
		t.Fatal(err)
	}
	a.waitHSM(id, h.ID, HSMActive)
	waitFor(t, "B's session using the new HSM", func() bool {
		sb.refresh(ctx, true)
		return sb.endpoint(h.ID) != nil
	})
	if err := sb.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sb.Encrypt(ctx, label, []byte("x"), nil); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("after logout: %v", err)
	}
}

// tlsExchange dials addr and makes one ping: TLS 1.3 reports a refused
// client certificate only on the first read.
func tlsExchange(addr string, cfg *tls.Config) error {
	cl := newTLSClient(addr, cfg)
	defer cl.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.call(ctx, &request{Op: opPing})
	return err
}
