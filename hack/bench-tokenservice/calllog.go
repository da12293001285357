package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/ingest"
)

// /v1/check with and without the call log, and the call log's ingest.

// callLogRuns measures /v1/check with wrk against two token services with
// the same 10,000 apps and no catalog, one without a call log and one that
// hands every decision to a queue whose writer is w.
func callLogRuns(o options, w calllog.Writer) (off, on []float64, err error) {
	ix, tok, err := index()
	if err != nil {
		return nil, nil, err
	}
	logged := service(ix, nil)
	q := calllog.NewQueue(w, calllog.QueueOptions{}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = q.Start(ctx); close(stopped) }()
	// The queue drains into w when stopped: it must be done before the
	// caller closes w.
	defer func() { cancel(); <-stopped }()
	logged.Calls = q
	return pairedRuns(o, service(ix, nil), logged, tok)
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
// and with an SQLite store in the checking process (what a store beside
// the checks costs: why the store is the insights component's), as table
// rows.
func callLogRows(o options) (string, error) {
	var b strings.Builder
	// A/A: two identical services without a call log, the harness's own
	// noise on this machine, for reading the rows below.
	ix, tok, err := index()
	if err != nil {
		return "", err
	}
	a1, a2, err := pairedRuns(o, service(ix, nil), service(ix, nil), tok)
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
	fmt.Fprintf(&b, "| the same with an SQLite store in the checking process (no command runs so: the store is the insights component's) | off %.0f req/s, on %.0f req/s; median of paired ratios %.1f%% | |\n",
		median(off), median(on), 100*pairedRatio(off, on))
	return b.String(), nil
}
