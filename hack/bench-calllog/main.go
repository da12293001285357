// Command bench-calllog measures the call log's stores on this machine:
// sustained ingest (entries per second through Store.Write in the queue's
// batches of 1,000), the disk used per million entries, and the p50/p99 of
// the filtered 30-day query an owner runs at 3 a.m. (one app, 5xx, a URL
// substring, one page of 500) over the stored entries. SQLite runs on a
// temporary file, PostgreSQL as Debian's server on loopback (pgtest). It
// prints markdown rows; `make bench-calllog` writes them into
// docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres/pgtest"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
)

func main() {
	entries := flag.Int("entries", 10_000_000, "Entries to store per backend.")
	queries := flag.Int("queries", 200, "Filtered queries to time per backend.")
	backends := flag.String("backends", "sqlite,postgres", "Which stores to measure.")
	flag.IntVar(&apps, "apps", 1000, "Apps the entries are spread over (in 50 namespaces); the filtered query reads one app's month.")
	flag.Parse()
	fmt.Printf("| store | entries (apps) | ingest | disk per million entries | app + 5xx + URL substring over 30 days, page of 500 | target |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, b := range splitComma(*backends) {
		row, err := measure(b, *entries, *queries)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-calllog:", b+":", err)
			os.Exit(1)
		}
		fmt.Println(row)
	}
}

func splitComma(s string) (out []string) {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

var apps = 1000

var paths = []string{"/crm/v3/objects/contacts/%d", "/crm/v3/objects/deals/%d", "/crm/v3/objects/companies/%d/associations/deals",
	"/crm/v3/objects/contacts/batch/read", "/files/v3/files/%d", "/crm/v3/objects/products/%d", "/crm/v3/pipelines/deals"}

// entry i of n: a month of calls of the apps in 50 namespaces, 1% of them
// 5xx, 3% 4xx.
func entry(r *rand.Rand, i, n int, now time.Time) calllog.Entry {
	app := r.IntN(apps)
	code := 200
	switch x := r.IntN(100); {
	case x == 0:
		code = 500 + r.IntN(4)
	case x < 4:
		code = 400 + r.IntN(30)
	}
	p := paths[r.IntN(len(paths))]
	e := calllog.Entry{
		ID: fmt.Sprintf("%016x", r.Uint64()), Time: now.Add(-time.Duration(int64(n-i) * int64(29*24*time.Hour) / int64(n))),
		Namespace: fmt.Sprintf("team-%02d", app%50), App: fmt.Sprintf("app-%04d", app), Method: "GET", Host: "api.example.com",
		Path: fmt.Sprintf(p, r.IntN(1_000_000)), Query: "properties=email,firstname", Route: "crm/route", Code: code,
		DecidedBy: calllog.DecidedByUpstream, Latency: time.Duration(r.IntN(200_000)) * time.Microsecond, Source: calllog.SourceGateway, Final: true,
	}
	e.Normalize()
	return e
}

func measure(backend string, n, queries int) (string, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-calllog-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	var store calllog.Store
	var disk func() (int64, error)
	switch backend {
	case "sqlite":
		path := filepath.Join(dir, "calls.db")
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return "", err
		}
		store = s
		disk = func() (int64, error) {
			var total int64
			for _, suffix := range []string{"", "-wal"} {
				if fi, err := os.Stat(path + suffix); err == nil {
					total += fi.Size()
				}
			}
			return total, nil
		}
	case "postgres":
		srv, err := pgtest.Start()
		if err != nil {
			return "", err
		}
		defer srv.Stop()
		dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", srv.Port)
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			return "", err
		}
		store = s
		disk = func() (int64, error) {
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return 0, err
			}
			defer c.Close(ctx)
			var size int64
			err = c.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
				JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'calls'`).Scan(&size)
			return size, err
		}
	default:
		return "", fmt.Errorf("no store %q (sqlite, postgres)", backend)
	}
	defer store.Close()

	r := rand.New(rand.NewPCG(7, 11))
	now := time.Now().UTC()
	batch := make([]calllog.Entry, 0, 1000)
	start := time.Now()
	var writing time.Duration
	for i := range n {
		batch = append(batch, entry(r, i, n, now))
		if len(batch) == cap(batch) || i == n-1 {
			t := time.Now()
			if err := store.Write(ctx, batch); err != nil {
				return "", err
			}
			writing += time.Since(t)
			batch = batch[:0]
		}
		if (i+1)%1_000_000 == 0 {
			fmt.Fprintf(os.Stderr, "%s: %d entries in %s\n", backend, i+1, time.Since(start).Round(time.Second))
		}
	}
	rate := float64(n) / writing.Seconds()
	bytes, err := disk()
	if err != nil {
		return "", err
	}

	var lat []time.Duration
	found := 0
	for range queries {
		app := r.IntN(apps)
		q := calllog.Query{Namespace: fmt.Sprintf("team-%02d", app%50), App: fmt.Sprintf("app-%04d", app), CodeClass: 5,
			URLContains: "objects/contacts", From: now.Add(-30 * 24 * time.Hour), Limit: 500}
		t := time.Now()
		p, err := store.List(ctx, q)
		if err != nil {
			return "", err
		}
		lat = append(lat, time.Since(t))
		found += len(p.Entries)
	}
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[min(len(lat)-1, len(lat)*p/100)].Round(10 * time.Microsecond) }
	return fmt.Sprintf("| %s | %d (%d) | %.0f entries/s (batches of 1,000) | %.0f MB | p50 %s, p99 %s over %d queries (%.1f matches each) | p99 under 200 ms |",
		backend, n, apps, rate, float64(bytes)/float64(n)*1e6/1e6, pct(50), pct(99), queries, float64(found)/float64(queries)), nil
}
