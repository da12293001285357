package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// The servers under test. Each runs in a process of its own: the harness
// runs its own binary again with --serve (spawn), so that wrk, the server
// and the harness do not share a Go runtime.

// sides are the servers of one listener kind (plain or TLS) that the
// throughput rows compare.
type sides struct {
	Bare, Headers, Check string
	// CheckNoLog is Check's token service without a call log.
	CheckNoLog string
}

// served is what a --serve process prints: its URLs, and for the token
// service the request a gateway sends and a TokenReview of the app's
// token.
type served struct {
	Plain, TLS sides
	Request    []string
	ReviewBody string
	// Received answers how many call-log entries the ingest endpoint got
	// (--serve=ingest); Debug is the process's net/http/pprof.
	Received, Debug string
}

// spawn starts this program with args and reads what it serves.
func spawn(args ...string) (*served, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var s served
	if err := json.NewDecoder(out).Decode(&s); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%v: %w", args, err)
	}
	return &s, nil
}

// serveCheck is the token service as a gateway meets it in the chart:
// 10,000 apps indexed, a 1,000-route catalog, the call log on (entries
// sent to an ingest endpoint, which here only counts them), limits that
// refuse nothing; the request is nginx's, for a route whose scope the app
// holds. Served plain and over TLS.
func serveCheck(ingestURL string) error {
	ctx := context.Background()
	ix, tok, err := index()
	if err != nil {
		return err
	}
	set, results := catalog.Compile([]catalog.Catalog{benchCatalog(1000)})
	if !results[0].InForce {
		return fmt.Errorf("the benchmark catalog is not in force: %+v", results[0])
	}
	q := calllog.NewQueue(ingestClient(ingestURL), calllog.QueueOptions{}, logr.Discard())
	go func() { _ = q.Start(ctx) }()
	svc := service(ix, staticCatalogs{set})
	svc.Calls = q
	noLog := service(ix, staticCatalogs{set})
	s := served{Request: []string{"Authorization: Bearer " + tok.Reveal(), "X-Original-Method: GET",
		"X-Original-URL: https://api.example.com/area7/v3/objects/type247/12345?properties=email"}}
	b, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": tok.Reveal()}})
	s.ReviewBody = string(b)
	cfg, err := selfSigned()
	if err != nil {
		return err
	}
	for _, l := range []struct {
		s   *sides
		cfg *tls.Config
	}{{&s.Plain, nil}, {&s.TLS, cfg}} {
		if l.s.Check, err = serveToken(ctx, svc, l.cfg); err != nil {
			return err
		}
		if l.s.CheckNoLog, err = serveToken(ctx, noLog, l.cfg); err != nil {
			return err
		}
		l.s.Check += tokenservice.PathCheck
		l.s.CheckNoLog += tokenservice.PathCheck
	}
	debug, err := serveHTTP(http.HandlerFunc(httppprof.Profile), nil)
	if err != nil {
		return err
	}
	s.Debug = debug
	return announce(s)
}

// serveBare serves the bare handlers: one answering 200, one writing the
// headers of an allowed check too; plain and over TLS.
func serveBare(answerHeaders string) error {
	var answer http.Header
	if err := json.Unmarshal([]byte(answerHeaders), &answer); err != nil {
		return fmt.Errorf("--answer-headers: %w", err)
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	headers := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		for k, v := range answer {
			h[k] = v
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg, err := selfSigned()
	if err != nil {
		return err
	}
	var s served
	for _, l := range []struct {
		s   *sides
		cfg *tls.Config
	}{{&s.Plain, nil}, {&s.TLS, cfg}} {
		if l.s.Bare, err = serveHTTP(bare, l.cfg); err != nil {
			return err
		}
		if l.s.Headers, err = serveHTTP(headers, l.cfg); err != nil {
			return err
		}
	}
	return announce(s)
}

// announce prints what this process serves and serves until killed.
func announce(s served) error {
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		return err
	}
	select {}
}

// profile takes a CPU profile of the token service's process during one
// wrk run of /v1/check.
func profile(o options, prod *served) error {
	done := make(chan error, 1)
	go func() {
		r, err := wrk(prod.Plain.Check, prod.Request, o.connections, o.duration)
		fmt.Printf("/v1/check: %.0f req/s while profiling\n", r)
		done <- err
	}()
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", prod.Debug, int(o.duration.Seconds())-1))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return err
	}
	return <-done
}

func getText(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// checkAnswerHeaders asks for one check and returns the answer's headers
// but Date and Content-Length, which every server writes.
func checkAnswerHeaders(url string, headers []string) (http.Header, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the benchmark's check answered %d", resp.StatusCode)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	h.Del("Content-Length")
	if len(h) != 10 {
		return nil, fmt.Errorf("an allowed check answered %d headers besides Date and Content-Length, not 10: %v", len(h), h)
	}
	return h, nil
}

// serveToken serves svc on loopback as the manager does
// (tokenservice.Serve), over TLS with cfg.
func serveToken(ctx context.Context, svc *tokenservice.Service, cfg *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	scheme := "http://"
	if cfg != nil {
		ln, scheme = tls.NewListener(ln, cfg.Clone()), "https://"
	}
	go func() { _ = tokenservice.Serve(ctx, ln, svc, logr.Discard()) }()
	return scheme + ln.Addr().String(), nil
}

// serveHTTP serves h with a plain net/http server, over TLS with cfg.
func serveHTTP(h http.Handler, cfg *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hs := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)} //nolint:gosec // loopback benchmark
	if cfg == nil {
		go func() { _ = hs.Serve(ln) }()
		return "http://" + ln.Addr().String(), nil
	}
	c := cfg.Clone()
	c.NextProtos = []string{"http/1.1"} // wrk speaks HTTP/1.1; so does the token service
	go func() { _ = hs.Serve(tls.NewListener(ln, c)) }()
	return "https://" + ln.Addr().String(), nil
}

// selfSigned is a TLS configuration with a certificate of a throwaway CA,
// ECDSA P-256 like the operator's own.
func selfSigned() (*tls.Config, error) {
	ca, err := certstest.NewCA("bench-ca")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-tls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	certFile, keyFile, err := ca.WriteCert(dir, "serving", "localhost", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// service is a token service over ix with limits high enough that no call
// is rate limited, and no introspection limit (wrk presents no client
// certificate; kube-apiserver's, which the limit exempts, would).
func service(ix *tokenservice.Index, cats tokenservice.Catalogs) *tokenservice.Service {
	limits := tokenservice.DefaultLimits()
	limits.Editions["free"] = tokenservice.EditionLimits{PerTenSeconds: 1 << 40, PerDay: 1 << 40}
	return &tokenservice.Service{Index: ix, Limiter: ratelimit.New(), Limits: limits, Usage: tokenservice.NewUsage(), Clock: clock.RealClock{}, Catalogs: cats}
}

// staticCatalogs is a compiled set that never changes.
type staticCatalogs struct{ set *catalog.Set }

func (s staticCatalogs) Current() *catalog.Set { return s.set }

// index holds 10,000 apps; the first one's token is returned.
func index() (*tokenservice.Index, token.Token, error) {
	ix := tokenservice.NewIndex()
	var first token.Token
	for i := range 10_000 {
		tok, err := token.New()
		if err != nil {
			return nil, tok, err
		}
		if i == 0 {
			first = tok
		}
		ix.Set(&v1alpha1.PrivateApp{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%02d", i%50), Name: fmt.Sprintf("app-%05d", i)},
			Spec:       v1alpha1.PrivateAppSpec{Scopes: []string{"crm.objects.contacts.read"}},
			Status:     v1alpha1.PrivateAppStatus{Token: &v1alpha1.TokenStatus{Digest: tok.Digest().String()}},
		})
	}
	return ix, first, nil
}
