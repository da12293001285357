// Package storetest is the conformance suite every call-log backend runs:
// the same writes, merges, filters, paging and retention, checked against
// calllog.Merge and calllog.Query.Matches.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// Open returns an empty store for one test; the suite closes it.
type Open func(t *testing.T) calllog.Store

// Run runs the suite.
func Run(t *testing.T, open Open) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open(t)) })
	t.Run("Merge", func(t *testing.T) { merge(t, open) })
	t.Run("Filters", func(t *testing.T) { filters(t, open(t)) })
	t.Run("Records", func(t *testing.T) { records(t, open(t)) })
	t.Run("Retention", func(t *testing.T) { retention(t, open(t)) })
	t.Run("GatewayReports", func(t *testing.T) { gatewayReports(t, open(t)) })
	t.Run("HostileText", func(t *testing.T) { hostileText(t, open(t)) })
	t.Run("BadQueries", func(t *testing.T) { badQueries(t, open(t)) })
}

var base = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func entry(id string, at time.Time) calllog.Entry {
	return calllog.Entry{ID: id, Time: at, Namespace: "team-a", App: "billing-sync", Method: "GET", Host: "api.example.com",
		Path: "/crm/v3/objects/contacts/1", Query: "properties=email", Route: "crm/contacts-get", Code: 200,
		DecidedBy: calllog.DecidedByTokenService, Reason: calllog.ReasonAllowed, Source: calllog.SourceGateway}
}

func write(t *testing.T, s calllog.Store, entries ...calllog.Entry) {
	t.Helper()
	for i := range entries {
		entries[i].Normalize()
	}
	if err := s.Write(context.Background(), entries); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func list(t *testing.T, s calllog.Store, q calllog.Query) calllog.Page {
	t.Helper()
	p, err := s.List(context.Background(), q)
	if err != nil {
		t.Fatalf("List(%+v): %v", q, err)
	}
	return p
}

func closeAtEnd(t *testing.T, s calllog.Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func same(a, b calllog.Entry) bool {
	return a.ID == b.ID && a.Time.Equal(b.Time) && a.Namespace == b.Namespace && a.App == b.App && a.Method == b.Method &&
		a.Host == b.Host && a.Path == b.Path && a.Query == b.Query && a.Route == b.Route && a.Code == b.Code &&
		a.DecidedBy == b.DecidedBy && a.Reason == b.Reason && a.Latency == b.Latency && a.Source == b.Source && a.Final == b.Final &&
		a.RecordType == b.RecordType && a.RecordAction == b.RecordAction && a.Gateway == b.Gateway
}

func roundTrip(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	e := entry("c1", base.Add(1234567*time.Microsecond))
	e.Latency, e.Final, e.Code, e.DecidedBy, e.Reason = 12345*time.Microsecond, true, 503, calllog.DecidedByUpstream, ""
	older := entry("c0", base)
	write(t, s, older, e)
	got := list(t, s, calllog.Query{}).Entries
	e.Normalize()
	older.Normalize()
	if len(got) != 2 || !same(got[0], e) || !same(got[1], older) {
		t.Fatalf("List returned\n%+v\nwant, newest first,\n%+v\n%+v", got, e, older)
	}
	if got[0].Time.Location() != time.UTC || got[0].Time.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("time %v is not UTC at millisecond precision", got[0].Time)
	}
}

// merge writes two reports of one call in both orders, in one batch and in
// two, and expects calllog.Merge's entry.
func merge(t *testing.T, open Open) {
	check := entry("m", base)
	check.Time = base.Add(2 * time.Millisecond)
	check.RecordType, check.RecordAction = "contacts", calllog.RecordUpdated
	gateway := calllog.Entry{ID: "m", Time: base, Namespace: "team-a", App: "billing-sync", Method: "GET", Host: "api.example.com",
		Path: "/crm/v3/objects/contacts/1", Code: 502, DecidedBy: calllog.DecidedByUpstream, Latency: 40 * time.Millisecond,
		Source: calllog.SourceGateway, Final: true}
	refused := entry("m", base.Add(time.Millisecond))
	refused.Code, refused.Reason, refused.Final, refused.Route = 403, "missing_scope", true, ""
	gatewayRefused := gateway
	gatewayRefused.Code, gatewayRefused.Latency = 403, 3*time.Millisecond
	cases := []struct {
		name        string
		first, then calllog.Entry
		wantCode    int
	}{
		{"allowed check, then the gateway's report", check, gateway, 502},
		{"the gateway's report, then the allowed check", gateway, check, 502},
		{"refusal, then the gateway's report", refused, gatewayRefused, 403},
		{"the gateway's report of a refusal, then the refusal", gatewayRefused, refused, 403},
		{"the same allowed check twice", check, check, 200},
	}
	for _, c := range cases {
		for _, oneBatch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s (one batch: %v)", c.name, oneBatch), func(t *testing.T) {
				s := open(t)
				closeAtEnd(t, s)
				first, then := c.first, c.then
				first.Normalize()
				then.Normalize()
				if oneBatch {
					write(t, s, first, then)
				} else {
					write(t, s, first)
					write(t, s, then)
				}
				want := calllog.Merge(first, then)
				got := list(t, s, calllog.Query{}).Entries
				if len(got) != 1 || !same(got[0], want) {
					t.Fatalf("after two reports the log holds\n%+v\nwant one entry\n%+v", got, want)
				}
				if got[0].Code != c.wantCode {
					t.Errorf("code %d, want %d", got[0].Code, c.wantCode)
				}
			})
		}
	}
	// The token service checks a call a few milliseconds after the gateway
	// starts it: the two reports can fall on either side of midnight, and
	// are still one call.
	midnight := calllog.StartOfDay(calllog.DayOf(base) + 1)
	late := check
	late.Time = midnight.Add(2 * time.Millisecond)
	early := gateway
	early.Time = midnight.Add(-time.Millisecond)
	for _, order := range [][2]calllog.Entry{{late, early}, {early, late}} {
		for _, oneBatch := range []bool{false, true} {
			t.Run(fmt.Sprintf("across midnight, first at %s (one batch: %v)", order[0].Time.Format("15:04:05.000"), oneBatch), func(t *testing.T) {
				s := open(t)
				closeAtEnd(t, s)
				first, then := order[0], order[1]
				if oneBatch {
					write(t, s, first, then)
				} else {
					write(t, s, first)
					write(t, s, then)
				}
				got := list(t, s, calllog.Query{}).Entries
				if len(got) != 1 || got[0].Code != 502 || !got[0].Time.Equal(early.Time) {
					t.Fatalf("two reports of one call across midnight left %+v; want one entry with the upstream's 502 at %s", got, early.Time)
				}
				counts, err := s.CountRecords(context.Background(), calllog.RecordQuery{FromDay: calllog.DayOf(base), ToDay: calllog.DayOf(base) + 1})
				if err != nil || len(counts) != 0 {
					t.Fatalf("a call the upstream failed counts as a record change: %+v, %v", counts, err)
				}
			})
		}
	}
	t.Run("far from midnight, the same id on two days is two calls", func(t *testing.T) {
		s := open(t)
		closeAtEnd(t, s)
		a, b := check, gateway
		a.Time, b.Time = midnight.Add(calllog.MidnightWindow+time.Millisecond), midnight.Add(-calllog.MidnightWindow-time.Millisecond)
		write(t, s, a, b)
		if got := list(t, s, calllog.Query{}).Entries; len(got) != 2 {
			t.Fatalf("%d entries, want 2", len(got))
		}
	})
	t.Run("same id, other app", func(t *testing.T) {
		s := open(t)
		closeAtEnd(t, s)
		other := gateway
		other.App = "crm-reporting"
		write(t, s, check, other)
		if got := list(t, s, calllog.Query{}).Entries; len(got) != 2 {
			t.Fatalf("an id reused by another app merged into this app's call: %+v", got)
		}
	})
}

// corpus is entries spread over apps, methods, codes, paths and five days.
func corpus(n int) []calllog.Entry {
	r := rand.New(rand.NewPCG(1, 2))
	namespaces := []string{"team-a", "team-b", "team-c"}
	apps := []string{"billing-sync", "crm-reporting", "warehouse-sync"}
	methods := []string{"GET", "POST", "PATCH", "DELETE"}
	codes := []int{200, 201, 204, 302, 401, 403, 404, 429, 500, 502, 503}
	types := []string{"contacts", "deals", "companies"}
	paths := []string{"/crm/v3/objects/contacts/1", "/crm/v3/objects/deals", "/crm/v3/objects/contacts/batch/read", "/files/v3/files/9"}
	out := make([]calllog.Entry, n)
	for i := range out {
		e := entry(fmt.Sprintf("id-%05d", r.IntN(n*2)), base.Add(-time.Duration(r.Int64N(int64(5*24*time.Hour)))))
		e.Namespace, e.App = namespaces[r.IntN(len(namespaces))], apps[r.IntN(len(apps))]
		e.Method, e.Code, e.Path = methods[r.IntN(len(methods))], codes[r.IntN(len(codes))], paths[r.IntN(len(paths))]
		e.Final = i%5 != 0
		// A gateway's report names no record; the token service's does.
		if i%3 != 0 {
			e.RecordType, e.RecordAction = types[r.IntN(len(types))], calllog.RecordActions[r.IntN(len(calllog.RecordActions))]
		}
		if i%11 == 0 {
			e.Code, e.Reason, e.Final = 403, "missing_scope", true
		}
		if i%13 == 0 {
			e.Gateway = "edge"
		}
		if i%7 == 0 {
			// Same millisecond as another entry: the order falls to the id.
			e.Time = out[i/2].Time
		}
		e.Normalize()
		out[i] = e
	}
	return out
}

type key struct {
	ns, app, id string
	day         int64
}

func filters(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	all := corpus(3000)
	for i := 0; i < len(all); i += 500 {
		write(t, s, all[i:min(i+500, len(all))]...)
	}
	// The reference: one entry per call, merged in write order.
	byKey := map[key]calllog.Entry{}
	for _, e := range all {
		k := key{e.Namespace, e.App, e.ID, e.Day()}
		if old, ok := byKey[k]; ok {
			e = calllog.Merge(old, e)
		}
		byKey[k] = e
	}
	queries := []calllog.Query{
		{},
		{Namespace: "team-b"},
		{Namespace: "team-a", App: "crm-reporting"},
		{Namespace: "team-a", App: "billing-sync", CodeClass: 5, URLContains: "contacts"},
		{Method: "DELETE", Code: 404},
		{CodeClass: 4, From: base.Add(-48 * time.Hour), To: base.Add(-24 * time.Hour)},
		{URLContains: "batch/read?prop"},
		{Namespace: "team-c", URLContains: "no such path"},
		{Reason: "missing_scope"},
		{Namespace: "team-a", Reason: calllog.ReasonAllowed, Code: 403},
	}
	for _, q := range queries {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			var want []calllog.Entry
			for _, e := range byKey {
				if q.Matches(e) {
					want = append(want, e)
				}
			}
			slices.SortFunc(want, func(a, b calllog.Entry) int {
				if (calllog.Cursor{TimeMillis: a.Time.UnixMilli(), Namespace: a.Namespace, App: a.App, ID: a.ID}).After(b) {
					return -1
				}
				return 1
			})
			for _, limit := range []int{0, 7, 200} {
				q := q
				q.Limit = limit
				var got []calllog.Entry
				for pages := 0; ; pages++ {
					if pages > len(want)+1 {
						t.Fatal("paging does not end")
					}
					p := list(t, s, q)
					if limit > 0 && len(p.Entries) > limit {
						t.Fatalf("a page of %d entries for limit %d", len(p.Entries), limit)
					}
					got = append(got, p.Entries...)
					if p.Continue == "" {
						break
					}
					q.Continue = p.Continue
				}
				if len(got) != len(want) {
					t.Fatalf("limit %d: %d entries, want %d", limit, len(got), len(want))
				}
				for i := range want {
					if !same(got[i], want[i]) {
						t.Fatalf("limit %d: entry %d is\n%+v\nwant\n%+v", limit, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// records counts the corpus's successful record calls, each call once as
// merged, against calllog.CountRecords.
func records(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	all := corpus(3000)
	for i := 0; i < len(all); i += 500 {
		write(t, s, all[i:min(i+500, len(all))]...)
	}
	byKey := map[key]calllog.Entry{}
	for _, e := range all {
		k := key{e.Namespace, e.App, e.ID, e.Day()}
		if old, ok := byKey[k]; ok {
			e = calllog.Merge(old, e)
		}
		byKey[k] = e
	}
	merged := slices.Collect(maps.Values(byKey))
	today := calllog.DayOf(base)
	for _, q := range []calllog.RecordQuery{
		{FromDay: today - 29, ToDay: today},
		{Namespace: "team-b", FromDay: today - 29, ToDay: today},
		{Namespace: "team-a", App: "crm-reporting", FromDay: today - 2, ToDay: today - 1},
		{Namespace: "team-c", RecordType: "deals", Action: calllog.RecordMerged, FromDay: today - 29, ToDay: today},
		{Action: calllog.RecordDeleted, FromDay: today, ToDay: today},
		{Namespace: "team-a", RecordType: "tickets", FromDay: today - 29, ToDay: today},
	} {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			got, err := s.CountRecords(context.Background(), q)
			if err != nil {
				t.Fatalf("CountRecords: %v", err)
			}
			want := calllog.CountRecords(merged, q)
			if !slices.Equal(got, want) {
				t.Fatalf("counts\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	if got := calllog.CountRecords(merged, calllog.RecordQuery{FromDay: today - 29, ToDay: today}); len(got) < 100 {
		t.Fatalf("the corpus has only %d record counts; the suite would prove little", len(got))
	}
}

func retention(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	today := calllog.DayOf(base)
	var entries []calllog.Entry
	for d := int64(0); d <= 31; d++ {
		midnight := calllog.StartOfDay(today - d)
		// The first and the last millisecond of each day.
		entries = append(entries, entry(fmt.Sprintf("first-%d", d), midnight), entry(fmt.Sprintf("last-%d", d), midnight.Add(24*time.Hour-time.Millisecond)))
	}
	write(t, s, entries...)
	// Keep today and the 29 days before it: 30 days.
	if err := s.DropBefore(context.Background(), today-29); err != nil {
		t.Fatalf("DropBefore: %v", err)
	}
	got := list(t, s, calllog.Query{Limit: calllog.MaxLimit}).Entries
	if len(got) != 60 {
		t.Fatalf("%d entries after dropping the days before the 30th, want 60", len(got))
	}
	oldest := got[len(got)-1]
	if oldest.ID != "first-29" || calllog.DayOf(oldest.Time) != today-29 {
		t.Errorf("the oldest entry kept is %s of %s, want first-29 of %s", oldest.ID, oldest.Time, calllog.StartOfDay(today-29))
	}
}

// gatewayReports marks the allowed checks whose gateway's report is overdue,
// and no other entry, against calllog.MarkUnreported; a late report still
// completes a marked entry.
func gatewayReports(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	ctx := context.Background()
	before := base.Add(time.Minute)
	awaiting := func(id, gateway string, at time.Time) calllog.Entry {
		e := entry(id, at)
		e.Gateway = gateway
		return e
	}
	reported := awaiting("reported", "edge", base)
	report := calllog.Entry{ID: "reported", Time: base.Add(time.Second), Namespace: reported.Namespace, App: reported.App,
		Code: 201, DecidedBy: calllog.DecidedByUpstream, Latency: 30 * time.Millisecond, Source: calllog.SourceGateway, Final: true}
	refused := awaiting("refused", "edge", base)
	refused.Code, refused.Reason, refused.Final = 403, "missing_scope", true
	entries := []calllog.Entry{
		awaiting("lost-1", "edge", base),
		awaiting("lost-2", "edge", base.Add(59*time.Second)),
		awaiting("lost-3", "internal", base.Add(-24*time.Hour)),
		awaiting("in-time", "edge", before), // not yet overdue
		entry("no-gateway", base),           // nobody reports it: the 200 is final enough
		refused,                             // a refusal awaits nothing
		reported, report,                    // the report came
	}
	write(t, s, entries...)
	want := map[key]calllog.Entry{}
	for _, e := range entries {
		e.Normalize()
		k := key{e.Namespace, e.App, e.ID, e.Day()}
		if old, ok := want[k]; ok {
			e = calllog.Merge(old, e)
		}
		want[k] = e
	}
	wantCounts := map[string]int{}
	for k, e := range want {
		if calllog.MarkUnreported(&e, before) {
			wantCounts[e.Gateway]++
		}
		want[k] = e
	}
	counts, err := s.MarkUnreported(ctx, before)
	if err != nil {
		t.Fatalf("MarkUnreported: %v", err)
	}
	if !maps.Equal(counts, wantCounts) {
		t.Errorf("MarkUnreported counted %v, want %v", counts, wantCounts)
	}
	got := list(t, s, calllog.Query{From: base.Add(-48 * time.Hour)}).Entries
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		if w := want[key{e.Namespace, e.App, e.ID, e.Day()}]; !same(e, w) {
			t.Errorf("after marking, the log holds\n%+v\nwant\n%+v", e, w)
		}
	}
	if again, err := s.MarkUnreported(ctx, before); err != nil || len(again) != 0 {
		t.Errorf("marking again counted %v (%v), want nothing: an entry is counted once", again, err)
	}
	unreported := list(t, s, calllog.Query{From: base.Add(-48 * time.Hour), Reason: calllog.ReasonNoGatewayReport}).Entries
	if len(unreported) != 3 {
		t.Errorf("reason=%s lists %d entries, want 3: %+v", calllog.ReasonNoGatewayReport, len(unreported), unreported)
	}

	// The report of lost-1 comes late: the entry becomes the upstream's.
	late := report
	late.ID, late.Code = "lost-1", 504
	write(t, s, late)
	got = list(t, s, calllog.Query{From: base.Add(-48 * time.Hour), App: reported.App, Code: 504}).Entries
	marked := entries[0]
	marked.Normalize()
	calllog.MarkUnreported(&marked, before)
	late.Normalize()
	if w := calllog.Merge(marked, late); len(got) != 1 || !same(got[0], w) {
		t.Errorf("a late report left\n%+v\nwant\n%+v", got, w)
	}
}

// hostileText: what a client can put into a URL or a gateway into a line
// (a character split by the length limit, NUL bytes, bytes that are not
// UTF-8) is stored and read back as valid UTF-8, and a row the store
// refuses does not keep the rest of its batch out of the log.
func hostileText(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	split := entry("split", base)
	split.Path = "/" + strings.Repeat("a", calllog.MaxPathLength-2) + "é" // é's second byte is past the limit
	nul := entry("nul", base)
	nul.Query, nul.Host, nul.Method = "q=a\x00b", "api\x00.example.com", "GE\x00T"
	invalid := entry("invalid", base)
	invalid.Path, invalid.Query, invalid.Route = "/crm/\xff\xfe/x", "name=\xc3", "crm/\xe2\x82"
	write(t, s, split, nul, invalid)
	got := list(t, s, calllog.Query{From: base.Add(-time.Hour)}).Entries
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	for _, e := range got {
		for _, v := range []string{e.ID, e.Namespace, e.App, e.Method, e.Host, e.Path, e.Query, e.Route, e.Reason, e.DecidedBy, e.Source} {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				t.Errorf("entry %s holds %q: not valid UTF-8, or a NUL", e.ID, v)
			}
		}
		if len(e.Path) > calllog.MaxPathLength {
			t.Errorf("entry %s has a path of %d bytes, over %d", e.ID, len(e.Path), calllog.MaxPathLength)
		}
	}
	for i := range got {
		if got[i].ID == "split" && got[i].Path != split.Path[:calllog.MaxPathLength-1] {
			t.Errorf("the path cut at a character boundary is %d bytes ending %q", len(got[i].Path), got[i].Path[len(got[i].Path)-3:])
		}
	}

	// A code no HTTP status has: the ingest endpoints drop such entries,
	// but a store that refuses the row must still write the others.
	odd := entry("odd", base.Add(time.Second))
	odd.Code, odd.Final = 70000, true
	good := []calllog.Entry{entry("good-1", base.Add(time.Second)), odd, entry("good-2", base.Add(time.Second))}
	for i := range good {
		good[i].Normalize()
	}
	if err := s.Write(context.Background(), good); err != nil {
		t.Fatalf("a batch with one odd row failed: %v; the queue would retry it forever and log nothing after it", err)
	}
	ids := map[string]bool{}
	for _, e := range list(t, s, calllog.Query{From: base.Add(-time.Hour)}).Entries {
		ids[e.ID] = true
	}
	if !ids["good-1"] || !ids["good-2"] {
		t.Errorf("the rows beside an odd one are not in the log: %v", ids)
	}
}

func badQueries(t *testing.T, s calllog.Store) {
	closeAtEnd(t, s)
	for _, q := range []calllog.Query{
		{Continue: "not a token"},
		{Limit: calllog.MaxLimit + 1},
		{Code: 700},
		{Code: 500, CodeClass: 5},
		{From: base, To: base},
	} {
		if _, err := s.List(context.Background(), q); err == nil {
			t.Errorf("List(%+v) succeeded; want an error", q)
		}
	}
	for _, q := range []calllog.RecordQuery{{FromDay: 10, ToDay: 9}, {Action: "Exploded"}} {
		if _, err := s.CountRecords(context.Background(), q); err == nil {
			t.Errorf("CountRecords(%+v) succeeded; want an error", q)
		}
	}
	if _, err := s.List(context.Background(), calllog.Query{Continue: "x"}); !errors.Is(err, calllog.ErrInvalidContinue) {
		t.Errorf("a bad continue token gives %v, want ErrInvalidContinue", err)
	}
}
