// Command bench-tokenservice measures the token service on loopback, with
// the load generator on the same machine:
//
//   - /v1/check throughput at fixed concurrency, next to a bare net/http
//     handler answering 200 (the ceiling for this design), and p50/p99
//     latency at half of /v1/check's maximum throughput;
//   - /v1/check throughput with a 1,000-route APICatalog next to the same
//     service without one, measured with Debian's wrk in alternating runs;
//   - revocation latency: the real manager binary against an envtest control
//     plane; delete an app, then time until its token is first refused.
//
// It prints a markdown section; `make bench` writes it into
// docs/benchmarks.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
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
	flags.BoolVar(&o.callLogOnly, "calllog-only", false, "Only compare /v1/check with the call log off and on (wrk), then stop.")
	_ = flags.Parse(os.Args[1:])
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
	bare, err := serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	if err != nil {
		return err
	}
	checkURL, tok, err := tokenService()
	if err != nil {
		return err
	}
	auth := "Bearer " + tok.Reveal()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		r, _ := load(checkURL, auth, o.connections, o.duration, 0)
		pprof.StopCPUProfile()
		fmt.Printf("/v1/check: %.0f req/s while profiling\n", r)
		return nil
	}

	// Two cores shared with the load generator make one run noisy: alternate
	// the two servers and compare medians.
	var bares, checks []float64
	for range o.rounds {
		r, _ := load(bare+"/", "", o.connections, o.duration, 0)
		bares = append(bares, r)
		r, _ = load(checkURL, auth, o.connections, o.duration, 0)
		checks = append(checks, r)
	}
	slices.Sort(bares)
	slices.Sort(checks)
	bareRPS, checkRPS := bares[len(bares)/2], checks[len(checks)/2]
	_, lat := load(checkURL, auth, o.connections, o.duration, checkRPS/2)
	slices.Sort(lat)

	empty, withCatalog, err := catalogRuns(o)
	if err != nil {
		return err
	}

	callLogTable, err := callLogRows(o)
	if err != nil {
		return err
	}

	revocations, err := revocationTrials(o)
	if err != nil {
		return err
	}
	slices.Sort(revocations)

	fmt.Printf("| measure | value | target |\n| --- | --- | --- |\n")
	fmt.Printf("| machine | %d cores, %s/%s; load generator (wrk-style: prepared requests, status line and Content-Length only) in the same process | |\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("| bare net/http handler, %d connections, median of %d runs | %.0f req/s (runs %.0f to %.0f) | ceiling |\n",
		o.connections, o.rounds, bareRPS, bares[0], bares[len(bares)-1])
	fmt.Printf("| /v1/check (10,000 apps indexed), %d connections, median of %d runs | %.0f req/s (runs %.0f to %.0f) = %.0f%% of bare | at least 80%% |\n",
		o.connections, o.rounds, checkRPS, checks[0], checks[len(checks)-1], 100*checkRPS/bareRPS)
	fmt.Printf("| /v1/check latency at %.0f req/s (half of max) | p50 %s, p99 %s | p99 under 1 ms |\n", checkRPS/2, pct(lat, 50), pct(lat, 99))
	ratio := pairedRatio(empty, withCatalog)
	slices.Sort(empty)
	slices.Sort(withCatalog)
	fmt.Printf("| /v1/check with nginx's X-Original-URL, no APICatalog, wrk -t1 -c%d, median of %d runs | %.0f req/s (runs %.0f to %.0f) | |\n",
		o.connections, o.rounds, empty[len(empty)/2], empty[0], empty[len(empty)-1])
	fmt.Printf("| the same with a 1,000-route APICatalog, the request matching a route, in ABBA order | %.0f req/s (runs %.0f to %.0f); median of the rounds' paired ratios %.1f%% of no catalog | at least 95%% |\n",
		withCatalog[len(withCatalog)/2], withCatalog[0], withCatalog[len(withCatalog)-1], 100*ratio)
	fmt.Print(callLogTable)
	fmt.Printf("| revocation: app deleted to first 401, %d trials (real manager, envtest) | p50 %s, p99 %s, max %s | p99 under 1 s |\n",
		len(revocations), pct(revocations, 50), pct(revocations, 99), revocations[len(revocations)-1])
	return nil
}

// tokenService serves the token service over loopback with 10,000 apps in
// its index and limits high enough that no call is rate limited.
func tokenService() (string, token.Token, error) {
	ix, first, err := index()
	if err != nil {
		return "", first, err
	}
	base, err := serve(server(ix, nil).Handler())
	return base + tokenservice.PathCheck + "?scope=crm.objects.contacts.read", first, err
}

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
	defer cancel()
	go func() { _ = q.Start(ctx) }()
	logged.Calls = q
	return pairedRuns(o, server(ix, nil), logged, tok)
}

// pairedRuns drives a and b with the same nginx-style request in ABBA
// order, so that a drift over the run (heap, CPU frequency) weighs on both
// sides alike.
func pairedRuns(o options, a, b *tokenservice.Server, tok token.Token) (ra, rb []float64, err error) {
	first, err := serve(a.Handler())
	if err != nil {
		return nil, nil, err
	}
	second, err := serve(b.Handler())
	if err != nil {
		return nil, nil, err
	}
	headers := []string{"Authorization: Bearer " + tok.Reveal(), "X-Original-Method: GET",
		"X-Original-URL: https://api.example.com/area7/v3/objects/type247/12345?properties=email"}
	for i := range o.rounds {
		order := []*[]float64{&ra, &rb}
		urls := []string{first, second}
		if i%2 == 1 {
			order[0], order[1], urls[0], urls[1] = order[1], order[0], urls[1], urls[0]
		}
		for j := range 2 {
			r, err := wrk(urls[j]+tokenservice.PathCheck, headers, o.connections, o.duration)
			if err != nil {
				return nil, nil, err
			}
			*order[j] = append(*order[j], r)
		}
	}
	return ra, rb, nil
}

// countingIngest is an ingest endpoint that only counts what it gets: the
// token-service side of the chart's shape, where the insights component
// (which decodes and stores) runs in another pod, on other cores.
func countingIngest() (*ingest.Client, *atomic.Int64, error) {
	var n atomic.Int64
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.Add(int64(bytes.Count(b, []byte(`{"id":`))))
		w.WriteHeader(http.StatusOK)
	}))
	return &ingest.Client{URL: ts.URL, Client: ts.Client()}, &n, nil
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
	fmt.Fprintf(&b, "| /v1/check with the call log on (entries sent to the insights ingest endpoint, the chart's shape) next to off, wrk -t1 -c%d, ABBA | off %.0f req/s, on %.0f req/s (medians); median of paired ratios %.1f%%; %d entries received | at least 95%% |\n",
		o.connections, median(off), median(on), 100*pairedRatio(off, on), received.Load())
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
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds()))}
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

func serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(ln, h) }()
	return "http://" + ln.Addr().String(), nil
}

// load sends GETs over conns keep-alive HTTP/1.1 connections for d. With
// rate 0 it sends as fast as answers come (throughput); with a rate it paces
// requests and returns each one's latency.
//
// Like wrk, it writes a prepared request and reads only the status line and
// Content-Length of each answer, allocating nothing per request: a load
// generator sharing the two cores with the server must cost as little as
// possible, or it measures itself. (Go's http.Client parses every answer
// header into a map, which penalized /v1/check's ten headers against the
// bare handler's none.)
func load(url, auth string, conns int, d time.Duration, rate float64) (float64, []time.Duration) {
	u, err := neturl.Parse(url)
	if err != nil {
		panic(err)
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if auth != "" {
		req += "Authorization: " + auth + "\r\n"
	}
	reqBytes := []byte(req + "\r\n")
	var done atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	stop := time.Now().Add(d)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate * float64(conns)))
		defer t.Stop()
		tick = t.C
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			mine := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(stop) {
				if tick != nil {
					<-tick
				}
				t0 := time.Now()
				if _, err := conn.Write(reqBytes); err != nil {
					return
				}
				status, err := readResponse(br)
				if err != nil {
					return
				}
				if status == http.StatusOK {
					done.Add(1)
					if tick != nil {
						mine = append(mine, time.Since(t0))
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), lat
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

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
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
