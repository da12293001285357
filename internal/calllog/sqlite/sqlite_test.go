package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) calllog.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReopen: entries survive a restart, and a file from a newer schema is
// refused with a message that says what to do.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "calls.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	e := calllog.Entry{ID: "a", Time: time.Now(), Namespace: "ns", App: "app", Method: "GET", Path: "/x", Code: 200, Final: true}
	e.Normalize()
	if err := s.Write(ctx, []calllog.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.List(ctx, calllog.Query{})
	if err != nil || len(p.Entries) != 1 || p.Entries[0].ID != "a" {
		t.Fatalf("after reopening: %+v, %v", p.Entries, err)
	}
	s.Close()
}

// TestRetentionAtMidnight: 30 days are kept; day 31 goes at start, and the
// next day goes at the next UTC midnight, without a restart.
func TestRetentionAtMidnight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 24, 23, 59, 0, 0, time.UTC)
	var entries []calllog.Entry
	for d := 0; d <= 31; d++ {
		e := calllog.Entry{ID: strconv.Itoa(d), Time: now.Add(-time.Duration(d) * 24 * time.Hour), Namespace: "ns", App: "app", Code: 200, Final: true}
		e.Normalize()
		entries = append(entries, e)
	}
	if err := s.Write(ctx, entries); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(now)
	r := &calllog.Retention{Store: s, Clock: clk, Log: logr.Discard()}
	go func() { _ = r.Start(ctx) }()
	count := func() int {
		p, err := s.List(ctx, calllog.Query{Limit: calllog.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Entries)
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d entries, want %d", count(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(30) // days 0..29
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(2 * time.Minute) // past midnight: day 29 is now the 31st
	waitFor(29)
}

// TestUpgradeKeepsEntries: a file written at schema version 1 (before
// record insights) is brought up to date on Open, its entries kept, and a
// later report of the same call adds what the call did to a record.
func TestUpgradeKeepsEntries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	e := calllog.Entry{ID: "x", Namespace: "ns", App: "app", Method: "POST", Code: 201, Final: true, Time: time.Now()}
	e.Normalize()
	for _, stmt := range []string{sqlite.Migrations[0], "PRAGMA user_version = 1",
		fmt.Sprintf(`INSERT INTO calls VALUES ('ns', 'app', %d, 'x', %d, 'POST', '', '/c', '', '', 201, 'upstream', '', 0, 'gateway', 1)`, e.Day(), e.Time.UnixMilli()),
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.List(ctx, calllog.Query{})
	if err != nil || len(p.Entries) != 1 || p.Entries[0].Code != 201 || p.Entries[0].RecordType != "" {
		t.Fatalf("after the upgrade: %+v, %v", p.Entries, err)
	}
	check := e
	check.Code, check.Final, check.RecordType, check.RecordAction = 200, false, "contacts", calllog.RecordCreated
	if err := s.Write(ctx, []calllog.Entry{check}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.CountRecords(ctx, calllog.RecordQuery{FromDay: e.Day(), ToDay: e.Day()})
	if err != nil || len(counts) != 1 || counts[0] != (calllog.RecordCount{Namespace: "ns", App: "app", Day: e.Day(), RecordType: "contacts", Action: "Created", Count: 1}) {
		t.Fatalf("record counts after the upgrade: %+v, %v", counts, err)
	}
}

// TestWriteAfterClose: a queue still draining when the store is closed
// gets an error, not a crash.
func TestWriteAfterClose(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []calllog.Entry{{ID: "a", Namespace: "ns", App: "app", Time: time.Now(), Method: "GET", Path: "/", Code: 200}}); err == nil {
		t.Fatal("a write after Close succeeded")
	}
	if err := s.Close(); err == nil {
		t.Fatal("a second Close succeeded")
	}
}

// runs numbers the runs of TestGatewayReportsSweep in this process.
var runs atomic.Int64

// TestGatewayReportsSweep: an allowed check whose gateway reports calls
// shows no_gateway_report once the wait has passed without the report, is
// counted once per gateway, and the count's labels stay bounded however
// many gateway names checks bring.
func TestGatewayReportsSweep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(now)
	var entries []calllog.Entry
	// Names of this run only: the counter is the process's.
	run := runs.Add(1)
	for i := range calllog.MaxGatewayLabels + 3 {
		e := calllog.Entry{ID: strconv.Itoa(i), Time: now, Namespace: "ns", App: "app", Method: "GET", Path: "/x", Code: 200,
			DecidedBy: calllog.DecidedByTokenService, Reason: calllog.ReasonAllowed, Source: calllog.SourceGateway,
			Gateway: fmt.Sprintf("sweep-test-%d-%02d", run, i)}
		e.Normalize()
		entries = append(entries, e)
	}
	if err := s.Write(ctx, entries); err != nil {
		t.Fatal(err)
	}
	g := &calllog.GatewayReports{Store: s, Wait: time.Minute, Clock: clk, Log: logr.Discard()}
	otherBefore := testutil.ToFloat64(calllog.GatewayReportsMissing.WithLabelValues("other"))
	unreported := func() int {
		p, err := s.List(ctx, calllog.Query{Reason: calllog.ReasonNoGatewayReport})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Entries)
	}
	go func() { _ = g.Start(ctx) }()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	if n := unreported(); n != 0 {
		t.Fatalf("%d calls marked before the wait passed", n)
	}
	clk.Step(time.Minute + time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for unreported() != len(entries) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls marked after the wait", unreported(), len(entries))
		}
		time.Sleep(10 * time.Millisecond)
	}
	labelled := 0
	for _, e := range entries {
		if testutil.ToFloat64(calllog.GatewayReportsMissing.WithLabelValues(e.Gateway)) == 1 {
			labelled++
		}
	}
	if other := testutil.ToFloat64(calllog.GatewayReportsMissing.WithLabelValues("other")) - otherBefore; labelled != calllog.MaxGatewayLabels || other != 3 {
		t.Errorf("counted %d gateways under their names and %v as other; want %d and 3", labelled, other, calllog.MaxGatewayLabels)
	}
}
