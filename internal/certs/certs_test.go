package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

var policy = Policy{CAValidity: 300 * 24 * time.Hour, LeafValidity: 90 * 24 * time.Hour}

func verify(t *testing.T, leafData map[string][]byte, name string, now time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(leafData[CACertKey]) {
		t.Fatal("no CA bundle beside the serving certificate")
	}
	certs, err := parseCerts(leafData[CertKey])
	if err != nil || len(certs) != 1 {
		t.Fatalf("serving certificate: %v", err)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now}); err != nil {
		t.Fatalf("the serving certificate does not verify for %s with its bundle: %v", name, err)
	}
}

func TestLifecycle(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	names := []string{"svc.ns.svc", "svc.ns.svc.cluster.local"}
	steps := []struct {
		name       string
		at         time.Duration
		names      []string
		caReason   string
		leafReason string
		bundle     int
	}{
		{name: "first start", at: 0, caReason: "created", leafReason: "issued", bundle: 1},
		{name: "a restart changes nothing", at: time.Hour, bundle: 1},
		{name: "just before the leaf's last third", at: 60*24*time.Hour - time.Hour, bundle: 1},
		{name: "the leaf's last third", at: 60*24*time.Hour + time.Hour, leafReason: "renewed", bundle: 1},
		{name: "a new DNS name", at: 61 * 24 * time.Hour, names: []string{"other.ns.svc"}, leafReason: "DNS names changed", bundle: 1},
		{name: "the CA's last third", at: 200*24*time.Hour + time.Hour, names: []string{"other.ns.svc"}, caReason: "renewed",
			leafReason: "not signed by the current CA", bundle: 2},
		{name: "the old CA expires and leaves the bundle", at: 400 * 24 * time.Hour, names: []string{"other.ns.svc"}, caReason: "dropped an expired CA",
			leafReason: "renewed", bundle: 1},
	}
	var caData, leafData map[string][]byte
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now := start.Add(s.at)
			n := names
			if s.names != nil {
				n = s.names
			}
			var ca *CA
			var caReason, leafReason string
			var err error
			caData, ca, caReason, err = EnsureCA(caData, "test", now, policy)
			if err != nil {
				t.Fatal(err)
			}
			leafData, leafReason, err = EnsureLeaf(leafData, ca, n, now, policy)
			if err != nil {
				t.Fatal(err)
			}
			if (s.caReason == "") != (caReason == "") || !strings.Contains(caReason, s.caReason) {
				t.Errorf("CA change %q, want %q", caReason, s.caReason)
			}
			if (s.leafReason == "") != (leafReason == "" || leafReason == "the CA bundle changed") || !strings.Contains(leafReason, s.leafReason) {
				t.Errorf("serving certificate change %q, want %q", leafReason, s.leafReason)
			}
			if len(ca.Bundle) != s.bundle {
				t.Errorf("CA bundle has %d certificates, want %d", len(ca.Bundle), s.bundle)
			}
			verify(t, leafData, n[0], now)
		})
	}
}

func TestUnusableDataIsReplaced(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good, ca, _, err := EnsureCA(nil, "test", now, policy)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, _ := EnsureCA(nil, "other", now, policy)
	leaf, _, _ := EnsureLeaf(nil, ca, []string{"a.svc"}, now, policy)
	for _, tt := range []struct {
		name  string
		ca    map[string][]byte
		leaf  map[string][]byte
		want  string
		check func() string
	}{
		{name: "CA key of another CA", ca: map[string][]byte{CACertKey: good[CACertKey], CAKeyKey: other[CAKeyKey]}, want: "replaced"},
		{name: "garbage CA", ca: map[string][]byte{CACertKey: []byte("junk"), CAKeyKey: []byte("junk")}, want: "replaced"},
		{name: "leaf key swapped", ca: good, leaf: map[string][]byte{CertKey: leaf[CertKey], KeyKey: other[CAKeyKey]}, want: "does not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ca2, reason, err := EnsureCA(tt.ca, "test", now, policy)
			if err != nil {
				t.Fatal(err)
			}
			if tt.leaf == nil {
				if !strings.Contains(reason, tt.want) {
					t.Fatalf("CA change %q, want %q", reason, tt.want)
				}
				return
			}
			out, reason, err := EnsureLeaf(tt.leaf, ca2, []string{"a.svc"}, now, policy)
			if err != nil || !strings.Contains(reason, tt.want) {
				t.Fatalf("leaf change %q (%v), want %q", reason, err, tt.want)
			}
			verify(t, out, "a.svc", now)
		})
	}
}

// TestTwoPhaseCARenewal: the next CA is published in the bundle a
// propagation period before it signs, so a holder that copied the bundle
// then verifies every serving certificate issued until the next renewal,
// and the webhook configurations get the bundle before any certificate of
// the new CA is served.
func TestTwoPhaseCARenewal(t *testing.T) {
	p := Policy{CAValidity: 365 * 24 * time.Hour, LeafValidity: 90 * 24 * time.Hour, Propagation: 30 * 24 * time.Hour}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	names := []string{"svc.ns.svc"}
	var caData, leafData map[string][]byte
	var holder []byte // a gateway's copy of ca.crt
	step := func(at time.Duration) (*CA, string, string) {
		t.Helper()
		ca, caReason, err := ensureCA(&caData, start.Add(at), p)
		if err != nil {
			t.Fatal(err)
		}
		var leafReason string
		leafData, leafReason, err = EnsureLeaf(leafData, ca, names, start.Add(at), p)
		if err != nil {
			t.Fatal(err)
		}
		return ca, caReason, leafReason
	}
	first, _, _ := step(0)
	step(200 * day) // the serving certificate's scheduled renewal
	published, caReason, leafReason := step(250 * day)
	if !strings.Contains(caReason, "renewal started") || !published.Cert.Equal(first.Cert) || len(published.Bundle) != 2 ||
		leafReason != "the CA bundle changed" {
		t.Fatalf("at the last third: CA %q (same signer %v, bundle %d), leaf %q; want the next CA published beside the signer, the leaf kept",
			caReason, published.Cert.Equal(first.Cert), len(published.Bundle), leafReason)
	}
	holder = caData[CACertKey]
	if ca, caReason, _ := step(265 * day); caReason != "" || !ca.Cert.Equal(first.Cert) {
		t.Fatalf("during propagation: %q, signer changed %v", caReason, !ca.Cert.Equal(first.Cert))
	}
	switched, caReason, leafReason := step(281 * day)
	if !strings.Contains(caReason, "renewed") || switched.Cert.Equal(first.Cert) || !strings.Contains(leafReason, "not signed by the current CA") {
		t.Fatalf("after propagation: CA %q, leaf %q; want the published CA signing and the leaf reissued", caReason, leafReason)
	}
	if _, ok := caData[NextCACertKey]; ok {
		t.Error("the successor is still stored after it became the signer")
	}
	verifyWith(t, holder, leafData, names[0], start.Add(281*day))
	// The previous CA stays trusted until it expires, then leaves the bundle.
	if ca, caReason, _ := step(366 * day); !strings.Contains(caReason, "dropped an expired CA") || len(ca.Bundle) != 1 {
		t.Fatalf("after the old CA expired: %q, bundle %d", caReason, len(ca.Bundle))
	}
}

func ensureCA(data *map[string][]byte, now time.Time, p Policy) (*CA, string, error) {
	out, ca, reason, err := EnsureCA(*data, "test", now, p)
	*data = out
	return ca, reason, err
}

func verifyWith(t *testing.T, bundle []byte, leafData map[string][]byte, name string, now time.Time) {
	t.Helper()
	verify(t, map[string][]byte{CACertKey: bundle, CertKey: leafData[CertKey]}, name, now)
}
