// Command bench-tokenservice measures the token service on loopback, with
// Debian's wrk as the load generator on the same machine:
//
//   - /v1/check throughput in the chart's shape (10,000 apps, a 1,000-route
//     APICatalog, the call log on), on the fasthttp and net/http engines,
//     plain and over TLS, next to a bare net/http handler answering 200 and
//     the same writing the check's ten answer headers, each server in a
//     process of its own, in alternating runs;
//   - latency at half of the plain maximum, paced wrk2-style by the harness,
//     next to the bare handler at the same rate;
//   - TokenReview over TLS next to kube-apiserver's own review of a
//     ServiceAccount token (envtest);
//   - /v1/check with and without an APICatalog, and with and without the
//     call log, in ABBA order;
//   - revocation latency: the real manager binary against an envtest control
//     plane; delete an app, then time until its token is first refused.
//
// It prints a markdown table; `make bench` writes it into
// docs/benchmarks.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
	"github.com/privateapps-dev/privateapp-operator/internal/ingest"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

type options struct {
	manager, assets, crds string
	connections           int
	duration              time.Duration
	trials                int
	rounds                int
	cpuProfile            string
	catalogOnly           bool
	callLogOnly           bool
	checkOnly             bool
	reviewOnly            bool
	serve                 string
	answerHeaders         string
	ingestURL             string
}

func main() {
	var o options
	flags := flag.NewFlagSet("bench-tokenservice", flag.ExitOnError)
	flags.StringVar(&o.manager, "manager", "bin/manager", "The manager binary, for the revocation trials.")
	flags.StringVar(&o.assets, "assets", envOr("KUBEBUILDER_ASSETS", "bin/k8s"), "Directory with etcd and kube-apiserver.")
	flags.StringVar(&o.crds, "crds", "config/crd/bases", "The CRDs.")
	flags.IntVar(&o.connections, "connections", 32, "Concurrent keep-alive connections of the load generator.")
	flags.DurationVar(&o.duration, "duration", 5*time.Second, "How long each throughput and latency run lasts.")
	flags.IntVar(&o.trials, "trials", 100, "Revocation trials.")
	flags.IntVar(&o.rounds, "rounds", 5, "Throughput rounds; bare and /v1/check runs alternate and the medians are compared.")
	flags.StringVar(&o.cpuProfile, "cpuprofile", "", "Write a CPU profile of one extra /v1/check throughput run here, then stop.")
	flags.BoolVar(&o.catalogOnly, "catalog-only", false, "Only compare /v1/check with and without a 1,000-route APICatalog (wrk), then stop.")
	flags.StringVar(&o.serve, "serve", "", "Internal: serve one side of the comparison in this process (check: the token service; bare: the bare handlers) and print its URLs as JSON.")
	flags.StringVar(&o.ingestURL, "ingest-url", "", "Internal: the ingest endpoint of --serve=check's call log.")
	flags.StringVar(&o.answerHeaders, "answer-headers", "", "Internal: the headers (JSON) the bare handler with headers writes.")
	flags.BoolVar(&o.reviewOnly, "review-only", false, "Only the TokenReview rows (kube-apiserver's and the token service's), then stop.")
	flags.BoolVar(&o.checkOnly, "check-only", false, "Only the /v1/check throughput and latency rows, then stop.")
	flags.BoolVar(&o.callLogOnly, "calllog-only", false, "Only compare /v1/check with the call log off and on (wrk), then stop.")
	_ = flags.Parse(os.Args[1:])
	ctrllog.SetLogger(logr.Discard()) // envtest's own lines are not the benchmark's
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tokenservice:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.catalogOnly {
		empty, withCatalog, err := catalogRuns(o)
		if err != nil {
			return err
		}
		fmt.Printf("no catalog %v\n1,000 routes %v\nmedian of paired ratios: %.1f%%\n", empty, withCatalog, 100*pairedRatio(empty, withCatalog))
		return nil
	}
	if o.callLogOnly {
		rows, err := callLogRows(o)
		if err != nil {
			return err
		}
		fmt.Print(rows)
		return nil
	}
	switch o.serve {
	case "check":
		return serveCheck(o.ingestURL)
	case "bare":
		return serveBare(o.answerHeaders)
	case "ingest":
		return serveIngest()
	}
	// The token service runs in a process of its own, as in the chart, and
	// the bare handlers in another: neither pays for the other's heap, and
	// the harness (which paces the latency runs) pays for neither.
	ingestProc, err := spawn("--serve=ingest")
	if err != nil {
		return err
	}
	prod, err := spawn("--serve=check", "--ingest-url="+ingestProc.Plain.Bare)
	if err != nil {
		return err
	}
	answer, err := checkAnswerHeaders(prod.Plain.Check, prod.Request)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(answer)
	bare, err := spawn("--serve=bare", "--answer-headers="+string(b))
	if err != nil {
		return err
	}
	prod.Plain.Bare, prod.Plain.Headers, prod.TLS.Bare, prod.TLS.Headers = bare.Plain.Bare, bare.Plain.Headers, bare.TLS.Bare, bare.TLS.Headers
	if o.cpuProfile != "" {
		return profile(o, prod)
	}
	if o.reviewOnly {
		rows, err := tokenReviewRows(o, prod)
		fmt.Print(rows)
		return err
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| measure | value | target |\n| --- | --- | --- |\n")
	fmt.Fprintf(&table, "| machine | %d cores, %s/%s; Debian's wrk (`wrk -t1 -c%d -d%ds`) on loopback, sharing the cores | |\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, o.connections, int(o.duration.Seconds()))
	var maxCheck float64
	for _, listener := range []struct {
		name string
		urls sides
	}{{"plain HTTP", prod.Plain}, {"TLS", prod.TLS}} {
		// Every side gets the gateway's request, headers and all: the bare
		// handlers' figure is what answering it at all costs.
		runs, err := alternate(o, []string{listener.urls.Bare, listener.urls.Headers, listener.urls.Check, listener.urls.NetHTTP, listener.urls.CheckNoLog}, prod.Request)
		if err != nil {
			return err
		}
		bare, headers, check, netHTTP, noLog := median(runs[0]), median(runs[1]), median(runs[2]), median(runs[3]), median(runs[4])
		if listener.urls == prod.Plain {
			maxCheck = check
		}
		fmt.Fprintf(&table, "| %s: bare net/http handler answering 200, median of %d alternating runs | %.0f req/s (runs %s) | ceiling |\n",
			listener.name, o.rounds, bare, spread(runs[0]))
		fmt.Fprintf(&table, "| %s: bare net/http handler writing /v1/check's ten answer headers | %.0f req/s (runs %s) = %.0f%% of bare | |\n",
			listener.name, headers, spread(runs[1]), 100*headers/bare)
		fmt.Fprintf(&table, "| **%s: /v1/check** (fasthttp engine, the default): 10,000 apps, 1,000-route APICatalog, call log on, nginx's headers | **%.0f req/s** (runs %s) = **%.0f%% of bare**, %.0f%% of bare with the ten headers | at least 90%% of bare |\n",
			listener.name, check, spread(runs[2]), 100*check/bare, 100*check/headers)
		fmt.Fprintf(&table, "| %s: the same on the net/http engine (`--token-service-http-engine=net/http`) | %.0f req/s (runs %s) = %.0f%% of bare | |\n",
			listener.name, netHTTP, spread(runs[3]), 100*netHTTP/bare)
		fmt.Fprintf(&table, "| %s: /v1/check (fasthttp) with the call log off, same process, same index and catalog | %.0f req/s (runs %s) = %.0f%% of bare; the call log on is %.1f%% of off (median of the rounds' paired ratios) | call log on at least 95%% of off |\n",
			listener.name, noLog, spread(runs[4]), 100*noLog/bare, 100*pairedRatio(runs[4], runs[2]))
	}
	// Latency: the check and, at the same rate, the bare handler, whose
	// figure is what the machine and the load generator add on their own.
	for _, listener := range []struct {
		name               string
		check, bare, noLog string
		tls                bool
	}{{"plain HTTP", prod.Plain.Check, prod.Plain.Bare, prod.Plain.CheckNoLog, false}, {"TLS", prod.TLS.Check, prod.TLS.Bare, prod.TLS.CheckNoLog, true}} {
		lat, achieved := paced(listener.check, prod.Request, listener.tls, o.connections, o.duration, maxCheck/2)
		floor, _ := paced(listener.bare, prod.Request, listener.tls, o.connections, o.duration, maxCheck/2)
		noLog, _ := paced(listener.noLog, prod.Request, listener.tls, o.connections, o.duration, maxCheck/2)
		fmt.Fprintf(&table, "| %s: /v1/check latency at half of the plain maximum, %.0f req/s asked (%.0f served), %d connections paced by the harness (wrk2-style) | p50 %s, **p99 %s**, p99.9 %s | p99 under 0.5 ms |\n",
			listener.name, maxCheck/2, achieved, o.connections, pct(lat, 50), pct(lat, 99), pct(lat, 999))
		fmt.Fprintf(&table, "| %s: the bare net/http handler at the same rate, same pacing (the machine's and the load generator's own share) | p50 %s, p99 %s, p99.9 %s | |\n",
			listener.name, pct(floor, 50), pct(floor, 99), pct(floor, 999))
		fmt.Fprintf(&table, "| %s: /v1/check with the call log off at the same rate | p50 %s, p99 %s, p99.9 %s | |\n",
			listener.name, pct(noLog, 50), pct(noLog, 99), pct(noLog, 999))
	}
	received, err := getText(ingestProc.Received)
	if err != nil {
		return err
	}
	fmt.Fprintf(&table, "| call-log entries the counting ingest endpoint received during these runs | %s | every allowed check is one |\n", received)
	if o.checkOnly {
		fmt.Print(table.String())
		return nil
	}

	reviews, err := tokenReviewRows(o, prod)
	if err != nil {
		return err
	}
	table.WriteString(reviews)

	empty, withCatalog, err := catalogRuns(o)
	if err != nil {
		return err
	}
	ratio := pairedRatio(empty, withCatalog)
	fmt.Fprintf(&table, "| /v1/check with nginx's X-Original-URL, no APICatalog, call log off, median of %d runs | %.0f req/s (runs %s) | |\n",
		o.rounds, median(empty), spread(empty))
	fmt.Fprintf(&table, "| the same with a 1,000-route APICatalog, the request matching a route, in ABBA order | %.0f req/s (runs %s); median of the rounds' paired ratios %.1f%% of no catalog | at least 95%% |\n",
		median(withCatalog), spread(withCatalog), 100*ratio)

	callLogTable, err := callLogRows(o)
	if err != nil {
		return err
	}
	table.WriteString(callLogTable)

	revocations, err := revocationTrials(o)
	if err != nil {
		return err
	}
	slices.Sort(revocations)
	fmt.Fprintf(&table, "| revocation: app deleted to first 401, %d trials (real manager, envtest) | p50 %s, p99 %s, max %s | p99 under 1 s |\n",
		len(revocations), pct(revocations, 50), pct(revocations, 99), revocations[len(revocations)-1])
	fmt.Print(table.String())
	return nil
}

// sides are the servers of one listener kind (plain or TLS) that the
// throughput rows compare.
type sides struct {
	Bare, Headers, Check, NetHTTP string
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
// holds. Served on both engines, plain and over TLS.
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
	srv := server(ix, staticCatalogs{set})
	srv.Calls = q
	noLog := server(ix, staticCatalogs{set})
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
		if l.s.Check, err = serveToken(ctx, srv, tokenservice.EngineFastHTTP, l.cfg); err != nil {
			return err
		}
		if l.s.NetHTTP, err = serveToken(ctx, srv, tokenservice.EngineNetHTTP, l.cfg); err != nil {
			return err
		}
		if l.s.CheckNoLog, err = serveToken(ctx, noLog, tokenservice.EngineFastHTTP, l.cfg); err != nil {
			return err
		}
		l.s.Check += tokenservice.PathCheck
		l.s.NetHTTP += tokenservice.PathCheck
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

// alternate runs wrk against each URL in turn, o.rounds times, starting
// each round one URL further, so that each side meets the machine's drift
// in every position; runs[i] are URL i's results.
func alternate(o options, urls []string, headers []string) ([][]float64, error) {
	runs := make([][]float64, len(urls))
	for round := range o.rounds {
		for k := range urls {
			i := (round + k) % len(urls)
			r, err := wrk(urls[i], headers, o.connections, o.duration)
			if err != nil {
				return nil, err
			}
			runs[i] = append(runs[i], r)
		}
	}
	return runs, nil
}

// spread lists the runs in the order they ran, so that a drift shows.
func spread(runs []float64) string {
	s := make([]string, len(runs))
	for i, r := range runs {
		s[i] = fmt.Sprintf("%.0f", r)
	}
	return "in order: " + strings.Join(s, ", ")
}

// serveToken serves srv on loopback with engine, as the manager does
// (tokenservice.Serve), over TLS with cfg.
func serveToken(ctx context.Context, srv *tokenservice.Server, engine tokenservice.Engine, cfg *tls.Config) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	scheme := "http://"
	if cfg != nil {
		ln, scheme = tls.NewListener(ln, cfg.Clone()), "https://"
	}
	go func() { _ = tokenservice.Serve(ctx, ln, srv, engine, logr.Discard()) }()
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
	c.NextProtos = []string{"http/1.1"} // wrk speaks HTTP/1.1; so does the fasthttp engine
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

// tokenReviewRows compares TokenReviews over TLS: kube-apiserver's own of
// a ServiceAccount token (envtest's kube-apiserver, called with a
// ServiceAccount token allowed to create TokenReviews) and the token
// service's of an app token, both driven by wrk with a Lua script that
// posts the review, in alternating runs.
func tokenReviewRows(o options, p *served) (string, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{o.crds}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: o.assets}
	cfg, err := env.Start()
	if err != nil {
		return "", err
	}
	defer func() { _ = env.Stop() }()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bench-reviewer"}}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: "bench-reviewer"}},
	}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bench-reviewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	saToken := tr.Status.Token
	b, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": saToken}})
	dir, err := os.MkdirTemp("", "bench-review-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	apiserverScript, err := postScript(dir, "apiserver.lua", string(b))
	if err != nil {
		return "", err
	}
	ourScript, err := postScript(dir, "tokenservice.lua", p.ReviewBody)
	if err != nil {
		return "", err
	}
	apiserver := strings.TrimSuffix(cfg.Host, "/") + tokenservice.PathTokenReview
	ours := strings.TrimSuffix(p.TLS.Check, tokenservice.PathCheck) + tokenservice.PathTokenReview
	// Both answer authenticated before anything is measured.
	for _, c := range []struct{ url, auth, body string }{{apiserver, "Bearer " + saToken, string(b)}, {ours, "", p.ReviewBody}} {
		if err := reviewOnce(c.url, c.auth, c.body); err != nil {
			return "", err
		}
	}
	var theirs, mine []float64
	for round := range o.rounds {
		runs := []func() error{
			func() error {
				r, err := wrkScript(apiserver, []string{"Authorization: Bearer " + saToken}, apiserverScript, o.connections, o.duration)
				theirs = append(theirs, r)
				return err
			},
			func() error {
				r, err := wrkScript(ours, nil, ourScript, o.connections, o.duration)
				mine = append(mine, r)
				return err
			},
		}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			if err := run(); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("| TokenReview over TLS: kube-apiserver (envtest's, from %s) reviewing a ServiceAccount token, median of %d alternating runs | %.0f reviews/s (runs %s) | |\n"+
		"| **TokenReview over TLS: the token service reviewing an app token** (same wrk, same machine, alternating) | **%.0f reviews/s** (runs %s) = **%.1fx kube-apiserver's** | at least 10x |\n",
		o.assets, o.rounds, median(theirs), spread(theirs), median(mine), spread(mine), median(mine)/median(theirs)), nil
}

// reviewOnce posts one TokenReview and wants it authenticated.
func reviewOnce(url, auth, body string) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback benchmark
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var review authnv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil || !review.Status.Authenticated {
		return fmt.Errorf("the TokenReview at %s was not authenticated (%d, %v)", url, resp.StatusCode, err)
	}
	return nil
}

// postScript writes a wrk script that posts body as JSON.
func postScript(dir, name, body string) (string, error) {
	path := filepath.Join(dir, name)
	script := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
	return path, os.WriteFile(path, []byte(script), 0o600)
}

// paced sends GETs over conns keep-alive connections at rate requests per
// second in all for d, wrk2-style: each connection has a fixed schedule
// (one request every conns/rate seconds), and a request that waited for
// the previous answer counts from the time it was due, so a stall is not
// hidden by sending less. It returns the sorted latencies and the rate
// served.
func paced(url string, headers []string, useTLS bool, conns int, d time.Duration, rate float64) ([]time.Duration, float64) {
	u, err := neturl.Parse(url)
	if err != nil {
		panic(err)
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	reqBytes := []byte(req + "\r\n")
	interval := time.Duration(float64(time.Second) * float64(conns) / rate)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now().Add(100 * time.Millisecond)
	stop := start.Add(d)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var err error
			if useTLS {
				conn, err = tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback benchmark
			} else {
				conn, err = net.Dial("tcp", u.Host)
			}
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			mine := make([]time.Duration, 0, int(d/interval)+1)
			var answered time.Time
			for due := start.Add(interval * time.Duration(k) / time.Duration(conns)); due.Before(stop); due = due.Add(interval) {
				time.Sleep(time.Until(due))
				// A request held up by the previous answer counts from when
				// it was due; one the harness's own timer woke late counts
				// from when it went out (Go's timers oversleep by up to a
				// millisecond when the process idles, which is not the
				// server's latency).
				from := time.Now()
				if answered.After(due) {
					from = due
				}
				if _, err := conn.Write(reqBytes); err != nil {
					return
				}
				status, err := readResponse(br)
				if err != nil || status != http.StatusOK {
					return
				}
				answered = time.Now()
				mine = append(mine, answered.Sub(from))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, float64(len(lat)) / d.Seconds()
}

// server is a token service over ix with limits high enough that no call
// is rate limited, and no introspection limit (wrk presents no client
// certificate; kube-apiserver's, which the limit exempts, would).
func server(ix *tokenservice.Index, cats tokenservice.Catalogs) *tokenservice.Server {
	limits := tokenservice.DefaultLimits()
	limits.Editions["free"] = tokenservice.EditionLimits{PerTenSeconds: 1 << 40, PerDay: 1 << 40}
	return &tokenservice.Server{Index: ix, Limiter: ratelimit.New(), Limits: limits, Usage: tokenservice.NewUsage(), Clock: clock.RealClock{}, Catalogs: cats}
}

// staticCatalogs is a compiled set that never changes.
type staticCatalogs struct{ set *catalog.Set }

func (s staticCatalogs) Current() *catalog.Set { return s.set }

// benchCatalog is n routes shaped like a real API: areas, object types, and
// per type a list, a get by id, a search and an association path, all
// needing a scope the benchmark's apps hold.
func benchCatalog(n int) catalog.Catalog {
	c := catalog.Catalog{Name: "bench", Scopes: []string{"crm.objects.contacts.read", "crm.objects.contacts.write"}}
	for i := 0; len(c.Routes) < n; i++ {
		base := fmt.Sprintf("/area%d/v3/objects/type%d", i%10, i)
		for _, r := range []catalog.Route{
			{Methods: []string{"GET"}, Path: base},
			{Methods: []string{"GET"}, Path: base + "/{id}"},
			{Methods: []string{"POST"}, Path: base + "/search"},
			{Methods: []string{"PUT"}, Path: base + "/{id}/associations/{to}/{toId}"},
		} {
			r.Name, r.Scopes = fmt.Sprintf("r%d", len(c.Routes)), []string{"crm.objects.contacts.read"}
			c.Routes = append(c.Routes, r)
		}
	}
	c.Routes = c.Routes[:n]
	return c
}

// catalogRuns measures /v1/check with wrk against two token services with
// the same 10,000 apps, one with no catalog and one with a 1,000-route
// catalog, sending both the same nginx-style request, in alternating rounds.
func catalogRuns(o options) (empty, withCatalog []float64, err error) {
	ix, tok, err := index()
	if err != nil {
		return nil, nil, err
	}
	set, results := catalog.Compile([]catalog.Catalog{benchCatalog(1000)})
	if !results[0].InForce {
		return nil, nil, fmt.Errorf("the benchmark catalog is not in force: %+v", results[0])
	}
	return pairedRuns(o, server(ix, nil), server(ix, staticCatalogs{set}), tok)
}

// callLogRuns measures /v1/check with wrk against two token services with
// the same 10,000 apps and no catalog, one without a call log and one that
// hands every decision to a queue whose writer is w.
func callLogRuns(o options, w calllog.Writer) (off, on []float64, err error) {
	ix, tok, err := index()
	if err != nil {
		return nil, nil, err
	}
	logged := server(ix, nil)
	q := calllog.NewQueue(w, calllog.QueueOptions{}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = q.Start(ctx); close(stopped) }()
	// The queue drains into w when stopped: it must be done before the
	// caller closes w.
	defer func() { cancel(); <-stopped }()
	logged.Calls = q
	return pairedRuns(o, server(ix, nil), logged, tok)
}

// pairedRuns drives a and b with the same nginx-style request in ABBA
// order, so that a drift over the run (heap, CPU frequency) weighs on both
// sides alike.
func pairedRuns(o options, a, b *tokenservice.Server, tok token.Token) (ra, rb []float64, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := serveToken(ctx, a, tokenservice.EngineFastHTTP, nil)
	if err != nil {
		return nil, nil, err
	}
	second, err := serveToken(ctx, b, tokenservice.EngineFastHTTP, nil)
	if err != nil {
		return nil, nil, err
	}
	headers := []string{"Authorization: Bearer " + tok.Reveal(), "X-Original-Method: GET",
		"X-Original-URL: https://api.example.com/area7/v3/objects/type247/12345?properties=email"}
	runs, err := alternate(o, []string{first + tokenservice.PathCheck, second + tokenservice.PathCheck}, headers)
	if err != nil {
		return nil, nil, err
	}
	return runs[0], runs[1], nil
}

// countingIngest is an ingest endpoint that only counts what it gets: the
// token-service side of the chart's shape, where the insights component
// (which decodes and stores) runs in another pod, on other cores.
// It runs in a process of its own (--serve=ingest), as the insights
// component does; received reads its count.
func countingIngest() (client *ingest.Client, received func() (string, error), err error) {
	s, err := spawn("--serve=ingest")
	if err != nil {
		return nil, nil, err
	}
	return ingestClient(s.Plain.Bare), func() (string, error) { return getText(s.Received) }, nil
}

// ingestClient posts to url over TLS, trusting the benchmark's throwaway
// certificate.
func ingestClient(url string) *ingest.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback benchmark
	return &ingest.Client{URL: url, Client: &http.Client{Transport: tr}}
}

// serveIngest serves the counting ingest endpoint over TLS.
func serveIngest() error {
	var n atomic.Int64
	cfg, err := selfSigned()
	if err != nil {
		return err
	}
	url, err := serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.Add(int64(bytes.Count(b, []byte(`{"id":`))))
		w.WriteHeader(http.StatusOK)
	}), cfg)
	if err != nil {
		return err
	}
	count, err := serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, n.Load()) }), nil)
	if err != nil {
		return err
	}
	return announce(served{Plain: sides{Bare: url}, Received: count})
}

// callLogRows compares /v1/check with the call log off and on, in the
// chart's shape (entries sent to the insights component's ingest endpoint)
// and in make dev's (an SQLite store in the same process), as table rows.
func callLogRows(o options) (string, error) {
	var b strings.Builder
	// A/A: two identical services without a call log, the harness's own
	// noise on this machine, for reading the rows below.
	ix, tok, err := index()
	if err != nil {
		return "", err
	}
	a1, a2, err := pairedRuns(o, server(ix, nil), server(ix, nil), tok)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| A/A: two identical services without a call log, same harness | %.0f and %.0f req/s; median of paired ratios %.1f%% | the harness's noise |\n",
		median(a1), median(a2), 100*pairedRatio(a1, a2))
	remote, received, err := countingIngest()
	if err != nil {
		return "", err
	}
	off, on, err := callLogRuns(o, remote)
	if err != nil {
		return "", err
	}
	n, err := received()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| /v1/check with the call log on (entries sent to the insights ingest endpoint, the chart's shape) next to off, wrk -t1 -c%d, ABBA | off %.0f req/s, on %.0f req/s (medians); median of paired ratios %.1f%%; %s entries received | at least 95%% |\n",
		o.connections, median(off), median(on), 100*pairedRatio(off, on), n)
	// The insights component down: every batch fails and waits, the queue
	// fills, and entries are dropped at the edge.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	downURL := "https://" + ln.Addr().String()
	ln.Close()
	off, on, err = callLogRuns(o, &ingest.Client{URL: downURL, Client: &http.Client{Timeout: time.Second}})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| the same with the insights component down (every batch fails; the full queue drops at the edge) | off %.0f req/s, on %.0f req/s; median of paired ratios %.1f%% | the checks do not slow down |\n",
		median(off), median(on), 100*pairedRatio(off, on))
	dir, err := os.MkdirTemp("", "bench-calllog-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "calls.db"))
	if err != nil {
		return "", err
	}
	defer store.Close()
	off, on, err = callLogRuns(o, store)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "| the same with an SQLite store in the token service's process (make dev's shape) | off %.0f req/s, on %.0f req/s; median of paired ratios %.1f%% | |\n",
		median(off), median(on), 100*pairedRatio(off, on))
	return b.String(), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// pairedRatio is the median over rounds of with/without: each round's two
// runs sit side by side in time, so their ratio cancels the machine's drift,
// which spreads single runs by ±10% here.
func pairedRatio(without, with []float64) float64 {
	r := make([]float64, len(without))
	for i := range without {
		r[i] = with[i] / without[i]
	}
	slices.Sort(r)
	return r[len(r)/2]
}

// wrk runs Debian's wrk (one thread) and returns its requests per second; a
// run with any answer other than 2xx is an error, so a refusal cannot pass
// for speed.
func wrk(url string, headers []string, conns int, d time.Duration) (float64, error) {
	return wrkScript(url, headers, "", conns, d)
}

// wrkScript is wrk with a Lua script (-s), when given.
func wrkScript(url string, headers []string, script string, conns int, d time.Duration) (float64, error) {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds()))}
	if script != "" {
		args = append(args, "-s", script)
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	out, err := exec.Command("wrk", append(args, url)...).Output()
	if err != nil {
		return 0, fmt.Errorf("wrk (apt-get install wrk; hack/test-deps.sh installs it): %w", err)
	}
	if bytes.Contains(out, []byte("Non-2xx")) {
		return 0, fmt.Errorf("wrk saw answers other than 2xx from %s", url)
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "Requests/sec:"); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no Requests/sec in wrk's output")
}

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

// readResponse reads one HTTP/1.1 answer and returns its status code.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("short status line %q", line)
	}
	status := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// revocationTrials creates trials apps (20 per namespace, the cap), then
// deletes them one by one, timing from the delete to the first 401 at
// /v1/check of the real manager's token service.
func revocationTrials(o options) ([]time.Duration, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{o.crds}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: o.assets}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	user, err := env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-tokenservice")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(o.manager, "--health-probe-bind-address=0", "--token-service-bind-address="+addr, "--token-service-insecure")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var apps []*v1alpha1.PrivateApp
	for i := range o.trials {
		ns := fmt.Sprintf("rev-%02d", i/20)
		if i%20 == 0 {
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				return nil, err
			}
		}
		app := &v1alpha1.PrivateApp{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%03d", i)},
			Spec:       v1alpha1.PrivateAppSpec{DisplayName: "Bench", Scopes: []string{"crm.objects.contacts.read"}},
		}
		if err := c.Create(ctx, app); err != nil {
			return nil, err
		}
		apps = append(apps, app)
	}
	check := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+tokenservice.PathCheck, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var out []time.Duration
	for _, app := range apps {
		var tok string
		deadline := time.Now().Add(time.Minute)
		for {
			if c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady) {
				var s corev1.Secret
				if c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s) == nil {
					tok = string(s.Data[v1alpha1.SecretTokenKey])
					if check(tok) == http.StatusOK {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("app %s/%s was not Ready with a working token within a minute", app.Namespace, app.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := c.Delete(ctx, app); err != nil {
			return nil, err
		}
		start := time.Now()
		for check(tok) != http.StatusUnauthorized {
			if time.Since(start) > 10*time.Second {
				return nil, fmt.Errorf("app %s/%s's token still works 10 s after the delete", app.Namespace, app.Name)
			}
			time.Sleep(200 * time.Microsecond)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// pct is the p-th percentile of sorted; p above 100 is in tenths (999 is
// the 99.9th).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	scale := 100
	if p > 100 {
		scale = 1000
	}
	i := (len(sorted)*p + scale - 1) / scale
	if i > 0 {
		i--
	}
	return sorted[i].Round(time.Microsecond)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
