package hsm

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"time"
)

// maxCertPEM is CloudHSM's limit on SignedCert and TrustAnchor.
const maxCertPEM = 5000

func parseCertPEM(what, s string) (*x509.Certificate, error) {
	if len(s) > maxCertPEM {
		return nil, invalid("%s must be a PEM certificate of at most %d characters.", what, maxCertPEM)
	}
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, invalid("%s is not a PEM-encoded X.509 certificate.", what)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, invalid("%s must hold exactly one certificate.", what)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, invalid("%s cannot be parsed as an X.509 certificate.", what)
	}
	return c, nil
}

func parseCSRPEM(s string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, invalid("The cluster CSR is damaged.")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

// checkInitialize applies CloudHSM's rules for InitializeCluster: the trust
// anchor is a self-signed RSA-2048 or RSA-4096 root (a CA if it carries
// BasicConstraints), the signed certificate chains to it, is currently valid,
// and certifies the key of the cluster's CSR.
func checkInitialize(csrPEM, signedPEM, anchorPEM string, now time.Time) error {
	anchor, err := parseCertPEM("TrustAnchor", anchorPEM)
	if err != nil {
		return err
	}
	signed, err := parseCertPEM("SignedCert", signedPEM)
	if err != nil {
		return err
	}
	if !bytes.Equal(anchor.RawSubject, anchor.RawIssuer) || anchor.CheckSignatureFrom(anchor) != nil {
		// CheckSignatureFrom also refuses a certificate whose BasicConstraints
		// say it is not a CA.
		if anchor.BasicConstraintsValid && !anchor.IsCA {
			return invalid("TrustAnchor must be a CA certificate (BasicConstraints CA:TRUE).")
		}
		return invalid("TrustAnchor must be a self-signed root certificate.")
	}
	rk, ok := anchor.PublicKey.(*rsa.PublicKey)
	if !ok || (rk.N.BitLen() != 2048 && rk.N.BitLen() != 4096) {
		return invalid("TrustAnchor must have an RSA 2048-bit or 4096-bit key.")
	}
	if now.Before(anchor.NotBefore) || now.After(anchor.NotAfter) {
		return invalid("TrustAnchor is not valid at this time.")
	}
	if err := signed.CheckSignatureFrom(anchor); err != nil {
		return invalid("SignedCert was not signed by TrustAnchor.")
	}
	if now.Before(signed.NotBefore) || now.After(signed.NotAfter) {
		return invalid("SignedCert is not valid at this time.")
	}
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		return invalid("The cluster CSR is damaged.")
	}
	want, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return invalid("The cluster CSR is damaged.")
	}
	if !bytes.Equal(want, signed.RawSubjectPublicKeyInfo) {
		return invalid("SignedCert does not certify the public key of the cluster CSR.")
	}
	return nil
}
