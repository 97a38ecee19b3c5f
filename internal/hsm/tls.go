package hsm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/rootkey"
)

// The HSM network: a persistent HSM daemon listens on TCP at its ENI IP
// (DescribeClusters' EniIp) and a port kept in its record, with mutual TLS,
// so that every keyhold replica sharing the database, on this host or
// another, reaches the cluster.
//
// Trust: each cluster has a network CA of its own (ECDSA P-256) made by
// keyhold's control plane when its first HSM starts. Its certificate is in
// the cluster record; its private key is in the record sealed by the root
// key, which every replica holds and nothing else does. The replica that
// runs a daemon issues the daemon's server certificate (DNS name = the HSM
// ID, IP = its ENI IP) and hands it, with its key and the CA, over the
// daemon's standard input: the daemon's key never touches the disk. Each
// replica (each Manager) issues itself a client certificate per cluster,
// in memory. A daemon accepts only TLS 1.3 clients whose certificate the
// cluster CA signed; a client accepts only the daemon whose certificate the
// CA issued for that HSM ID.

// Sealer seals and opens small secrets (rootkey.Key implements it).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// NetworkCA is a cluster's HSM network CA as its record keeps it.
type NetworkCA struct {
	CertPEM   string
	SealedKey []byte // PKCS#8 DER sealed by the root key
}

func caAAD(clusterID string) []byte { return []byte("keyhold-hsm-network-ca:" + clusterID) }

// issuer is an opened cluster CA and this Manager's client certificate.
type issuer struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
	client  tls.Certificate
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("hsm: crypto/rand failed: " + err.Error())
	}
	return n
}

func makeNetworkCA(sealer Sealer, clusterID string, now time.Time) (*NetworkCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: newSerial(),
		Subject:   pkix.Name{CommonName: "keyhold HSM network CA " + clusterID, Organization: []string{"keyhold"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	sealed, err := sealer.Seal(p8, caAAD(clusterID))
	clear(p8)
	if err != nil {
		return nil, err
	}
	return &NetworkCA{CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), SealedKey: sealed}, nil
}

func openNetworkCA(sealer Sealer, clusterID string, ca *NetworkCA, instance string, now time.Time) (*issuer, error) {
	b, _ := pem.Decode([]byte(ca.CertPEM))
	if b == nil {
		return nil, errors.New("hsm: cluster network CA certificate is damaged")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("hsm: cluster network CA: %w", err)
	}
	p8, err := sealer.Open(ca.SealedKey, caAAD(clusterID))
	if err != nil {
		return nil, fmt.Errorf("hsm: cluster network CA key does not open with this root key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(p8)
	clear(p8)
	if err != nil {
		return nil, fmt.Errorf("hsm: cluster network CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("hsm: cluster network CA key is not ECDSA")
	}
	is := &issuer{cert: cert, certPEM: []byte(ca.CertPEM), key: key, pool: x509.NewCertPool()}
	is.pool.AddCert(cert)
	is.client, err = is.issue(x509.Certificate{Subject: pkix.Name{CommonName: "keyhold replica " + instance},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, now)
	if err != nil {
		return nil, err
	}
	return is, nil
}

// issue makes a leaf certificate from tmpl (subject, names, usage) with a
// fresh P-256 key, valid for a year.
func (is *issuer) issue(tmpl x509.Certificate, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = newSerial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.AddDate(1, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, is.cert, &key.PublicKey, is.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serverBundle is what a daemon reads on its standard input before it
// listens: its certificate and key and the CA its clients must chain to.
func (is *issuer) serverBundle(hsmID string, ip net.IP, now time.Time) ([]byte, error) {
	tmpl := x509.Certificate{Subject: pkix.Name{CommonName: hsmID}, DNSNames: []string{hsmID},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	c, err := is.issue(tmpl, now)
	if err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	clear(p8)
	pem.Encode(&buf, &pem.Block{Type: "CLIENT CA CERTIFICATE", Bytes: is.cert.Raw})
	buf.WriteString(bundleEnd + "\n")
	return buf.Bytes(), nil
}

// clientTLS is the configuration this Manager dials the HSM hsmID with.
func (is *issuer) clientTLS(hsmID string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: is.pool, ServerName: hsmID,
		Certificates: []tls.Certificate{is.client}, NextProtos: []string{muxProto}}
}

// bundleEnd ends the TLS bundle on a daemon's standard input.
const bundleEnd = "end-of-tls-bundle"

// readServerBundle reads the bundle serverBundle wrote and returns the
// daemon's TLS configuration: TLS 1.3, client certificates required and
// verified against the cluster CA.
func readServerBundle(r *bufio.Reader) (*tls.Config, error) {
	var buf bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, errors.New("hsm-daemon: standard input ended before the TLS bundle did")
		}
		if line == bundleEnd+"\n" {
			break
		}
		buf.WriteString(line)
		if buf.Len() > 64<<10 {
			return nil, errors.New("hsm-daemon: TLS bundle too large")
		}
	}
	var certDER, keyDER []byte
	pool := x509.NewCertPool()
	rest := buf.Bytes()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			certDER = b.Bytes
		case "PRIVATE KEY":
			keyDER = b.Bytes
		case "CLIENT CA CERTIFICATE":
			ca, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("hsm-daemon: client CA: %w", err)
			}
			pool.AddCert(ca)
		}
	}
	clear(buf.Bytes())
	if certDER == nil || keyDER == nil {
		return nil, errors.New("hsm-daemon: TLS bundle lacks a certificate or key")
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	clear(keyDER)
	if err != nil {
		return nil, fmt.Errorf("hsm-daemon: TLS key: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{certDER}, PrivateKey: key}}, NextProtos: []string{muxProto}}, nil
}

// issuers opens (and caches) cluster CAs for one Manager.
type issuers struct {
	sealer   Sealer
	instance string
	mu       sync.Mutex
	byID     map[string]*issuer
}

// get returns the cluster's issuer, making and storing the cluster's CA the
// first time any replica needs it (the first write wins).
func (m *Manager) issuer(ctx context.Context, clusterID string) (*issuer, error) {
	// The lock guards the cache only: the record I/O below may wait for
	// the cluster's lock (held by an owner command or a backup), and must
	// not hold up other clusters. Two opens of one CA give equal issuers.
	m.iss.mu.Lock()
	is := m.iss.byID[clusterID]
	m.iss.mu.Unlock()
	if is != nil {
		return is, nil
	}
	rec, err := m.reg.GetCluster(ctx, clusterID)
	if err != nil {
		return nil, err
	}
	if rec.NetworkCA == nil {
		ca, err := makeNetworkCA(m.iss.sealer, clusterID, m.now())
		if err != nil {
			return nil, fmt.Errorf("hsm: cluster network CA: %w", err)
		}
		rec, err = m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
			if r.NetworkCA == nil {
				r.NetworkCA = ca
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	is, err = openNetworkCA(m.iss.sealer, clusterID, rec.NetworkCA, m.instance, m.now())
	if err != nil {
		return nil, err
	}
	m.iss.mu.Lock()
	defer m.iss.mu.Unlock()
	if old := m.iss.byID[clusterID]; old != nil {
		return old, nil
	}
	m.iss.byID[clusterID] = is
	return is, nil
}

// fileSealer is the Sealer of a Manager given none (tests, tools): a root
// key file in the HSM directory, mode 0600, as keyhold's own root key.
func fileSealer(dir string) (Sealer, error) {
	k, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "network-ca.key"))
	if err != nil {
		return nil, err
	}
	return k, nil
}
