package tokenservice

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip: the source address the introspection limit counts by.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// TestIntrospectionLimitPerSource: access-token-info and TokenReview share
// one budget per source address per second; another source has its own;
// the next second starts afresh; and the 429 says what to do.
func TestIntrospectionLimitPerSource(t *testing.T) {
	f := newFixture(t)
	limited := *f.service
	limited.Introspection = &IntrospectionLimit{PerSecond: 3}
	f.serve(t, &limited)
	call := func(path, source string) answer {
		body := `{"tokenKey":"` + f.current.Reveal() + `"}`
		if path == PathTokenReview {
			b, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: f.current.Reveal()}})
			body = string(b)
		}
		req, err := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
		must(t, err)
		a := roundTrip(t, clientFrom(source), req)
		f.assertNoToken(t, a)
		return a
	}
	for i, path := range []string{PathAccessTokenInfo, PathTokenReview, PathAccessTokenInfo} {
		if a := call(path, "127.0.0.11"); a.code != http.StatusOK {
			t.Fatalf("call %d (%s): %d %s", i+1, path, a.code, a.body)
		}
	}
	for _, path := range []string{PathAccessTokenInfo, PathTokenReview} {
		a := call(path, "127.0.0.11")
		var e struct{ Category, Message string }
		_ = json.Unmarshal(a.body, &e)
		if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" || e.Category != categoryRateLimits ||
			!strings.Contains(e.Message, "--introspection-rate-limit") || !strings.Contains(e.Message, "from 127.0.0.11") {
			t.Errorf("%s past the limit: %d %q %s", path, a.code, a.header.Get("Retry-After"), a.body)
		}
	}
	if a := call(PathAccessTokenInfo, "127.0.0.12"); a.code != http.StatusOK {
		t.Errorf("another source: %d", a.code)
	}
	f.clock.Step(time.Second)
	if a := call(PathAccessTokenInfo, "127.0.0.11"); a.code != http.StatusOK {
		t.Errorf("the next second: %d", a.code)
	}
}

// TestCheckIsNoFreeOracle: refused tokens take from their source's
// introspection budget at /v1/check; past it the answer is still 401, but
// no longer says which tokens exist or when they expired. Valid tokens are
// never metered, and other sources keep the details.
func TestCheckIsNoFreeOracle(t *testing.T) {
	f := newFixture(t)
	f.clock.SetTime(t0.Add(2 * time.Hour)) // the previous token has expired
	limited := *f.service
	limited.Introspection = &IntrospectionLimit{PerSecond: 2}
	f.serve(t, &limited)
	check := func(tok, source string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, f.url+PathCheck, nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		a := roundTrip(t, clientFrom(source), req)
		f.assertNoToken(t, a)
		return a.code, string(a.body)
	}
	const source = "127.0.0.21"
	expired := f.prev.Reveal()
	for i := range 2 {
		if code, body := check(expired, source); code != http.StatusUnauthorized || !strings.Contains(body, "expired at") {
			t.Fatalf("refusal %d within the budget: %d %s", i+1, code, body)
		}
	}
	if code, _ := check(f.current.Reveal(), source); code != http.StatusOK {
		t.Errorf("a valid token past the budget of refusals: %d", code)
	}
	code, body := check(expired, source)
	if code != http.StatusUnauthorized || strings.Contains(body, "expired") || !strings.Contains(body, "details withheld") {
		t.Errorf("a refusal past the budget: %d %s; want 401 without the expiry", code, body)
	}
	if code, body := check(expired, "127.0.0.22"); code != http.StatusUnauthorized || !strings.Contains(body, "expired at") {
		t.Errorf("another source: %d %s", code, body)
	}
}

// TestTokenReviewClientCertificate serves over real TLS with
// --token-review-client-ca: a TokenReview with a certificate of that CA is
// answered (and not counted against the introspection limit), one without
// is refused with what to configure, one from another CA fails the
// handshake, and gateways still check without certificates.
func TestTokenReviewClientCertificate(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	serverCA, err := certstest.NewCA("token-service-ca")
	must(t, err)
	certFile, keyFile, err := serverCA.WriteCert(dir, "serving", "localhost", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	must(t, err)
	apiserverCA, err := certstest.NewCA("kube-apiserver-client-ca")
	must(t, err)
	caFile, err := apiserverCA.WriteCA(dir, "client-ca")
	must(t, err)

	s := *f.service
	s.TokenReviewNeedsClientCert = true
	s.Introspection = &IntrospectionLimit{PerSecond: 1}
	serving, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(t, err)
	cfg, err := servingTLS(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil }, caFile)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := func(s *Service) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		go func() { _ = Serve(ctx, tls.NewListener(ln, cfg), s, logr.Discard()) }()
		return "https://localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
	}
	url := serve(&s)

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	clientWith := func(ca *certstest.CA) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if ca != nil {
			c, k, err := ca.WriteCert(t.TempDir(), "client", "kube-apiserver", nil, x509.ExtKeyUsageClientAuth)
			must(t, err)
			pair, err := tls.LoadX509KeyPair(c, k)
			must(t, err)
			cfg.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	review, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: f.current.Reveal()}})
	var postTo func(c *http.Client, url string) (int, string, error)
	post := func(c *http.Client) (int, string, error) {
		return postTo(c, url)
	}
	postTo = func(c *http.Client, url string) (int, string, error) {
		resp, err := c.Post(url+PathTokenReview, "application/json", bytes.NewReader(review))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String(), nil
	}

	apiserver := clientWith(apiserverCA)
	for i := range 3 { // past the introspection limit of 1: not counted
		if code, body, err := post(apiserver); err != nil || code != http.StatusOK || !strings.Contains(body, `"authenticated":true`) {
			t.Fatalf("review %d with kube-apiserver's certificate: %d %s %v", i+1, code, body, err)
		}
	}
	code, body, err := post(clientWith(nil))
	if err != nil || code != http.StatusUnauthorized || !strings.Contains(body, "client-certificate and client-key") {
		t.Errorf("review without a certificate: %d %s %v", code, body, err)
	}
	stranger, err := certstest.NewCA("someone-else")
	must(t, err)
	// Go's client offers no certificate the server's CA list does not
	// name; a client that did would fail the handshake. Either way: no.
	if code, body, err := post(clientWith(stranger)); err == nil && code != http.StatusUnauthorized {
		t.Errorf("review with a certificate of another CA: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, url+PathCheck, nil)
	req.Header.Set("Authorization", "Bearer "+f.current.Reveal())
	req.Header.Set("X-Original-URL", "https://api.example.com/crm/v3/objects/contacts/1")
	req.Header.Set("X-Original-Method", "GET")
	resp, err := clientWith(nil).Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a gateway's check without a certificate: %d", resp.StatusCode)
	}

	// OAuth 2.0 introspection by client certificate (tls_client_auth): a
	// certificate whose common name is a client declared with certificate:
	// true is that client; one whose client may only use a secret is not,
	// and neither is a caller without a certificate.
	withClients := func(file string) string {
		path := filepath.Join(t.TempDir(), "clients.yaml")
		must(t, os.WriteFile(path, []byte(file), 0o600))
		clients, err := LoadIntrospectionClients(path, nil)
		must(t, err)
		c := s
		c.OAuthClients, c.Introspection = clients, &IntrospectionLimit{PerSecond: 100}
		return serve(&c)
	}
	introspect := func(c *http.Client, url string) (int, string) {
		resp, err := c.Post(url+PathIntrospect, "application/x-www-form-urlencoded", strings.NewReader("token="+f.current.Reveal()))
		must(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	byCert := withClients("clients:\n- id: kube-apiserver\n  certificate: true\n")
	if code, body := introspect(apiserver, byCert); code != http.StatusOK || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"aud":"kube-apiserver"`) {
		t.Errorf("introspection with a declared client's certificate: %d %s", code, body)
	}
	if code, body := introspect(clientWith(nil), byCert); code != http.StatusUnauthorized {
		t.Errorf("introspection without a certificate or secret: %d %s", code, body)
	}
	bySecret := withClients("clients:\n- id: kube-apiserver\n  secret: " + gatewaySecret + "\n")
	if code, body := introspect(apiserver, bySecret); code != http.StatusUnauthorized || !strings.Contains(body, "certificate: true") {
		t.Errorf("introspection with the certificate of a client that may only use a secret: %d %s", code, body)
	}

	// Without the client-certificate requirement, uncertified reviews
	// meet the introspection limit of 1 a second.
	open := s
	open.TokenReviewNeedsClientCert, open.Introspection = false, &IntrospectionLimit{PerSecond: 1}
	openURL := serve(&open)
	limited := 0
	for range 3 {
		if code, body, err := postTo(clientWith(nil), openURL); err == nil && code == http.StatusTooManyRequests && strings.Contains(body, "--introspection-rate-limit") {
			limited++
		}
	}
	if limited < 2 {
		t.Errorf("%d of 3 uncertified reviews in a second were refused by the introspection limit of 1, want at least 2", limited)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
