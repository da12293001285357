// Command bench-tokenservice measures the token service on loopback, with
// Debian's wrk as the load generator on the same machine:
//
//   - /v1/check throughput in the chart's shape (10,000 apps, a 1,000-route
//     APICatalog, the call log on), plain and over TLS, next to a bare
//     net/http handler answering 200 and
//     the same writing the check's ten answer headers, each server in a
//     process of its own, in alternating runs;
//   - latency at half of the plain maximum, paced wrk2-style by the harness,
//     next to the bare handler at the same rate;
//   - TokenReview over TLS next to kube-apiserver's own review of a
//     ServiceAccount token (envtest);
//   - /v1/check with and without an APICatalog, and with and without the
//     call log, in ABBA order;
//   - revocation latency: the real manager and token service against an envtest control
//     plane; delete an app, then time until its token is first refused.
//
// It prints a markdown table; `make bench` writes it into
// docs/benchmarks.md.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

type options struct {
	bin, assets, crds string
	connections       int
	duration          time.Duration
	trials            int
	rounds            int
	cpuProfile        string
	catalogOnly       bool
	callLogOnly       bool
	checkOnly         bool
	reviewOnly        bool
	serve             string
	answerHeaders     string
	ingestURL         string
}

func main() {
	var o options
	flags := flag.NewFlagSet("bench-tokenservice", flag.ExitOnError)
	flags.StringVar(&o.bin, "bin", "bin", "The directory of the operator's commands (make build): the revocation trials run the manager and the token service.")
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
		runs, err := alternate(o, []string{listener.urls.Bare, listener.urls.Headers, listener.urls.Check, listener.urls.CheckNoLog}, prod.Request)
		if err != nil {
			return err
		}
		bare, headers, check, noLog := median(runs[0]), median(runs[1]), median(runs[2]), median(runs[3])
		if listener.urls == prod.Plain {
			maxCheck = check
		}
		fmt.Fprintf(&table, "| %s: bare net/http handler answering 200, median of %d alternating runs | %.0f req/s (runs %s) | ceiling |\n",
			listener.name, o.rounds, bare, spread(runs[0]))
		fmt.Fprintf(&table, "| %s: bare net/http handler writing /v1/check's ten answer headers | %.0f req/s (runs %s) = %.0f%% of bare | |\n",
			listener.name, headers, spread(runs[1]), 100*headers/bare)
		fmt.Fprintf(&table, "| **%s: /v1/check**: 10,000 apps, 1,000-route APICatalog, call log on, nginx's headers | **%.0f req/s** (runs %s) = **%.0f%% of bare**, %.0f%% of bare with the ten headers | at least 90%% of bare |\n",
			listener.name, check, spread(runs[2]), 100*check/bare, 100*check/headers)
		fmt.Fprintf(&table, "| %s: /v1/check with the call log off, same process, same index and catalog | %.0f req/s (runs %s) = %.0f%% of bare; the call log on is %.1f%% of off (median of the rounds' paired ratios) | call log on at least 95%% of off |\n",
			listener.name, noLog, spread(runs[3]), 100*noLog/bare, 100*pairedRatio(runs[3], runs[2]))
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
	fmt.Fprintf(&table, "| revocation: app deleted to first 401, %d trials (real manager and token service, envtest) | p50 %s, p99 %s, max %s | p99 under 1 s |\n",
		len(revocations), pct(revocations, 50), pct(revocations, 99), revocations[len(revocations)-1])
	fmt.Print(table.String())
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
