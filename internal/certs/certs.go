// Package certs keeps a self-signed CA and the serving certificates it signs
// valid: it issues them when missing and renews them before they expire,
// keeping the previous CA trusted while certificates it signed may still be
// served. It knows nothing of Kubernetes: the caller stores the PEM data
// (in Secrets) and passes it back.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// Keys of the data maps, as in a kubernetes.io/tls Secret, and of the CA's
// successor while it is published but does not sign yet.
const (
	CACertKey     = "ca.crt"
	CAKeyKey      = "ca.key"
	CertKey       = "tls.crt"
	KeyKey        = "tls.key"
	NextCACertKey = "next-ca.crt"
	NextCAKeyKey  = "next-ca.key"
)

// Policy says how long certificates live. Each is renewed once less than a
// third of its life is left. A CA is renewed in two phases: its successor
// is first published in the bundle beside it, and signs serving
// certificates only Propagation later, so that whoever copied the bundle
// has that long to pick up the new one before a certificate it cannot
// verify is served.
type Policy struct {
	CAValidity   time.Duration
	LeafValidity time.Duration
	// Propagation is how long a new CA is published before it signs;
	// zero switches at once.
	Propagation time.Duration
}

// DefaultPolicy is a CA for a year, its successor published after eight
// months and signing 30 days later (the old CA then has three months left,
// more than a serving certificate's life); serving certificates for 90
// days (renewed after 60).
var DefaultPolicy = Policy{CAValidity: 365 * 24 * time.Hour, LeafValidity: 90 * 24 * time.Hour, Propagation: 30 * 24 * time.Hour}

func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotAfter.Add(-life / 3))
}

// CA is the signing CA: its current certificate and key, and the bundle
// clients should trust (the current CA and any earlier one not yet expired).
type CA struct {
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
	Bundle []*x509.Certificate
}

// EnsureCA returns the CA data with a signing CA that is valid now, and
// why it changed ("" when it did not). When the signer enters the last
// third of its life, a successor is made and published in the bundle; it
// becomes the signer once Policy.Propagation has passed (or at once when
// the signer would otherwise expire before a serving certificate it
// signs). The previous signer stays in the bundle until it expires.
func EnsureCA(data map[string][]byte, name string, now time.Time, p Policy) (map[string][]byte, *CA, string, error) {
	ca, err := parseCA(data)
	if err != nil {
		reason := "created"
		if len(data) > 0 {
			// Unreadable data is replaced, not trusted.
			reason = fmt.Sprintf("replaced: the stored CA is unusable (%v)", err)
		}
		fresh, err := newCA(name, now, p.CAValidity)
		if err != nil {
			return nil, nil, "", err
		}
		fresh.Bundle = []*x509.Certificate{fresh.Cert}
		out, err := encodeCA(fresh, nil)
		return out, fresh, reason, err
	}
	next, _ := parseNext(data) // an unusable successor is made again
	live := slices.DeleteFunc(slices.Clone(ca.Bundle), func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) })
	var reason string
	if len(live) != len(ca.Bundle) {
		ca.Bundle, reason = live, "dropped an expired CA from the bundle"
	}
	if next == nil && dueForRenewal(ca.Cert, now) {
		if next, err = newCA(name, now, p.CAValidity); err != nil {
			return nil, nil, "", err
		}
		ca.Bundle = append([]*x509.Certificate{ca.Cert, next.Cert}, ca.Bundle[1:]...)
		reason = fmt.Sprintf("renewal started: the next CA is published in the bundle and signs from %s",
			next.Cert.NotBefore.Add(p.Propagation).UTC().Format(time.RFC3339))
	}
	if next != nil && (!now.Before(next.Cert.NotBefore.Add(p.Propagation)) || now.Add(p.LeafValidity).After(ca.Cert.NotAfter)) {
		old := ca.Cert
		rest := slices.DeleteFunc(slices.Clone(ca.Bundle), func(c *x509.Certificate) bool { return c.Equal(old) || c.Equal(next.Cert) })
		ca = &CA{Cert: next.Cert, Key: next.Key, Bundle: append([]*x509.Certificate{next.Cert, old}, rest...)}
		next = nil
		reason = "renewed: the CA published in the bundle since " + ca.Cert.NotBefore.UTC().Format(time.RFC3339) +
			" signs from now on; the previous one stays trusted until it expires"
	}
	if reason == "" {
		return data, ca, "", nil
	}
	out, err := encodeCA(ca, next)
	return out, ca, reason, err
}

// EnsureLeaf returns serving certificate data for names (DNS names, or IP
// addresses), signed by ca and not due for renewal, and why it changed (""
// when it did not).
func EnsureLeaf(data map[string][]byte, ca *CA, names []string, now time.Time, p Policy) (map[string][]byte, string, error) {
	bundle := encodeCerts(ca.Bundle)
	reason := leafProblem(data, ca, names, now)
	if reason == "" {
		if bytes.Equal(data[CACertKey], bundle) {
			return data, "", nil
		}
		out := map[string][]byte{CertKey: data[CertKey], KeyKey: data[KeyKey], CACertKey: bundle}
		return out, "the CA bundle changed", nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(p.LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	return map[string][]byte{
		CertKey:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyKey:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		CACertKey: bundle,
	}, reason, nil
}

// leafProblem says why the stored serving certificate must be reissued.
func leafProblem(data map[string][]byte, ca *CA, names []string, now time.Time) string {
	certs, err := parseCerts(data[CertKey])
	if err != nil || len(certs) == 0 {
		return "issued: there was no serving certificate"
	}
	leaf := certs[0]
	if _, err := tlsKeyMatches(data[KeyKey], leaf); err != nil {
		return "reissued: " + err.Error()
	}
	have := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	want := slices.Clone(names)
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		return "reissued: its DNS names changed"
	}
	if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
		return "reissued: it was not signed by the current CA"
	}
	if dueForRenewal(leaf, now) {
		return "renewed: less than a third of its validity was left"
	}
	return ""
}

func tlsKeyMatches(keyPEM []byte, leaf *x509.Certificate) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("its key is missing")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("its key is unreadable")
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("its key does not match the certificate")
	}
	return key, nil
}

func newCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s CA %s", name, now.UTC().Format("2006-01-02T15:04:05Z"))},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

func parseCA(data map[string][]byte) (*CA, error) {
	bundle, err := parseCerts(data[CACertKey])
	if err != nil || len(bundle) == 0 {
		return nil, errors.New("no CA certificate")
	}
	block, _ := pem.Decode(data[CAKeyKey])
	if block == nil {
		return nil, errors.New("no CA key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if pub, ok := bundle[0].PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) || !bundle[0].IsCA {
		return nil, errors.New("the CA key does not match the CA certificate")
	}
	return &CA{Cert: bundle[0], Key: key, Bundle: bundle}, nil
}

func encodeCA(ca, next *CA) (map[string][]byte, error) {
	keyDER, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{
		CACertKey: encodeCerts(ca.Bundle),
		CAKeyKey:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if next != nil {
		nextDER, err := x509.MarshalECPrivateKey(next.Key)
		if err != nil {
			return nil, err
		}
		out[NextCACertKey] = encodeCerts([]*x509.Certificate{next.Cert})
		out[NextCAKeyKey] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: nextDER})
	}
	return out, nil
}

// parseNext reads the published successor, if any.
func parseNext(data map[string][]byte) (*CA, error) {
	if len(data[NextCACertKey]) == 0 {
		return nil, nil
	}
	return parseCA(map[string][]byte{CACertKey: data[NextCACertKey], CAKeyKey: data[NextCAKeyKey]})
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func parseCerts(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, p = pem.Decode(p)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// LoadPool reads a PEM bundle of CA certificates (a --*-ca flag's file)
// into a pool, and says so when the file holds none.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
