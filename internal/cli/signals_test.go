package cli

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSlowRequest sends a request's headers and half its body and
// returns the connection: the server holds an in-flight request until the
// rest arrives.
func startSlowRequest(t *testing.T, endpoint string) (net.Conn, string) {
	t.Helper()
	u, _ := url.Parse(endpoint)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := `{"KeyId":"alias/none"}`
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.DescribeKey\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, len(body), body[:5])
	return conn, body[5:]
}

// TestSIGTERMDrainsInFlight: on SIGTERM (here: the context Main runs
// with), a request in flight still gets its answer, then serve exits 0.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	s := serveInProcess(t, "--shutdown-timeout", "30s")
	conn, rest := startSlowRequest(t, s.endpoint)
	time.Sleep(100 * time.Millisecond) // the server has read the headers
	exited := make(chan int, 1)
	go func() { exited <- s.stop() }()
	waitFor(t, func() bool { return strings.Contains(s.log.String(), "draining in-flight requests") })
	select {
	case code := <-exited:
		t.Fatalf("serve exited (%d) with a request in flight", code)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := conn.Write([]byte(rest)); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 ") {
		t.Fatalf("the in-flight request got no answer: %q %v", status, err)
	}
	if code := <-exited; code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if log := s.log.String(); strings.Contains(log, "did not finish") || !strings.Contains(log, `"msg":"stopped"`) {
		t.Fatalf("log:\n%s", log)
	}
}

// TestSIGTERMDeadline: a request that does not finish within
// --shutdown-timeout is cut, and serve still exits.
func TestSIGTERMDeadline(t *testing.T) {
	s := serveInProcess(t, "--shutdown-timeout", "200ms")
	startSlowRequest(t, s.endpoint)
	time.Sleep(100 * time.Millisecond)
	exited := make(chan int, 1)
	go func() { exited <- s.stop() }()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after its shutdown deadline")
	}
	if !strings.Contains(s.log.String(), "in-flight requests did not finish before the shutdown deadline") {
		t.Fatalf("log:\n%s", s.log.String())
	}
}

// TestSIGHUPReloadsLogLevelAndCertificate: SIGHUP takes the config file's
// new log level (not when the level was a flag) and the TLS certificate's
// new files.
func TestSIGHUPReloadsLogLevelAndCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, "first")
	cfg := filepath.Join(dir, "keyhold.conf")
	os.WriteFile(cfg, []byte("log-level = info\n"), 0o600)
	s := serveInProcess(t, "--config", cfg, "--tls-cert", certFile, "--tls-key", keyFile)
	if got := peerSerial(t, s.endpoint); got.Cmp(first) != 0 {
		t.Fatalf("serving certificate %v, want %v", got, first)
	}
	second := writeCert(t, certFile, keyFile, "second")
	os.WriteFile(cfg, []byte("log-level = debug\n"), 0o600)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return strings.Contains(s.log.String(), `"msg":"SIGHUP: log level changed","level":"debug"`) &&
			strings.Contains(s.log.String(), "SIGHUP: TLS certificate reloaded")
	})
	if got := peerSerial(t, s.endpoint); got.Cmp(second) != 0 {
		t.Fatalf("after SIGHUP serving certificate %v, want %v", got, second)
	}
	s.stop()

	// A level given as a flag wins over the file, also on SIGHUP.
	os.WriteFile(cfg, []byte("log-level = warn\n"), 0o600)
	f := serveInProcess(t, "--config", cfg, "--log-level", "info")
	os.WriteFile(cfg, []byte("log-level = debug\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(f.log.String(), "SIGHUP: audit file reopened") })
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(f.log.String(), "log level changed") {
		t.Fatalf("--log-level was overridden by the file:\n%s", f.log.String())
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and returns its
// serial number.
func writeCert(t *testing.T, certFile, keyFile, name string) *big.Int {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return serial
}

func peerSerial(t *testing.T, endpoint string) *big.Int {
	t.Helper()
	u, _ := url.Parse(endpoint)
	if u.Scheme != "https" {
		t.Fatalf("endpoint %s is not HTTPS", endpoint)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) // the test reads the certificate, trusts nothing
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
