package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

// cipherSuites are the TLS 1.2 suites offered: the spec's two ECDHE
// AES-256-GCM suites, ChaCha20, and the AES-128-GCM suites HTTP/2 requires.
// TLS 1.3 suites (including the spec's TLS_AES_256_GCM_SHA384 and
// TLS_CHACHA20_POLY1305_SHA256) are always on in Go.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
}

// TLSConfig builds the server TLS configuration: TLS 1.2+, the suites above,
// h2 and http/1.1, and, when configured, required client certificates from
// ClientCAFile whose subject CN must equal ClientCommonName.
func (c TLSConfig) build() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: TLS certificate: %w", err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxy: client CA %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		if cn := c.ClientCommonName; cn != "" {
			tc.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != cn {
					return errors.New("proxy: client certificate subject CN is not the configured one")
				}
				return nil
			}
		}
	}
	return tc, nil
}

// Listener is a running proxy: the TLS listener and, optionally, the plain
// /ping listener.
type Listener struct {
	Addr     net.Addr // the TLS address actually bound
	PingAddr net.Addr // nil without pingListen
	servers  []*http.Server
	errc     chan error
}

// Listen binds cfg.Listen (and cfg.PingListen) and starts serving s.
func (s *Server) Listen() (*Listener, error) {
	tc, err := s.cfg.TLS.build()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen: %w", err)
	}
	l := &Listener{Addr: ln.Addr(), errc: make(chan error, 2)}
	lim := s.cfg.Connections.netLimits()
	srv := lim.Server(s)
	tln := lim.Listen(ln, tc, xksReject)
	l.servers = append(l.servers, srv)
	go func() { l.errc <- srv.Serve(tln) }()
	if s.cfg.PingListen != "" {
		pln, err := net.Listen("tcp", s.cfg.PingListen)
		if err != nil {
			l.Shutdown(context.Background())
			return nil, fmt.Errorf("proxy: listen ping: %w", err)
		}
		l.PingAddr = pln.Addr()
		ping := lim.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.EscapedPath() != "/ping" {
				http.NotFound(w, r)
				return
			}
			s.ServeHTTP(w, r)
		}))
		pln = lim.Listen(pln, nil, xksReject)
		l.servers = append(l.servers, ping)
		go func() { l.errc <- ping.Serve(pln) }()
	}
	return l, nil
}

// xksReject answers a connection past a cap in the XKS error shape.
func xksReject(reason string) []byte {
	body, _ := json.Marshal(map[string]string{"errorName": "ThrottlingException", "errorMessage": reason})
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
}

// Err reports the first fatal serving error.
func (l *Listener) Err() <-chan error { return l.errc }

// Shutdown stops accepting and waits for in-flight requests.
func (l *Listener) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range l.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
