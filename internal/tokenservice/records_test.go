package tokenservice

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/sqlite"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

// TestRecordsAcrossMidnight: with no gateway access log, the token
// service's allow decisions are what record insights count. A fake clock
// walks across midnight UTC; each call counts on its own UTC day, under
// its route's record type and action, and refused calls count nowhere.
// The decisions go the real way: the queue, in batches, into SQLite.
func TestRecordsAcrossMidnight(t *testing.T) {
	f := newFixture(t)
	records := crmCatalog
	records.Name = "records"
	records.Routes = []catalog.Route{
		{Name: "contacts-create", Methods: []string{"POST"}, Path: "/crm/v3/objects/contacts", Scopes: []string{"crm.objects.contacts.read"}, RecordType: "contacts", RecordAction: "Created"},
		{Name: "contacts-update", Methods: []string{"PATCH"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.read"}, RecordType: "contacts", RecordAction: "Updated"},
		{Name: "contacts-delete", Methods: []string{"DELETE"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.read"}, RecordType: "contacts", RecordAction: "Deleted"},
		{Name: "contacts-merge", Methods: []string{"POST"}, Path: "/crm/v3/objects/contacts/merge", Scopes: []string{"crm.objects.contacts.read"}, RecordType: "contacts", RecordAction: "Merged"},
		{Name: "companies-create", Methods: []string{"POST"}, Path: "/crm/v3/objects/companies", Scopes: []string{"crm.objects.companies.write"}, RecordType: "companies", RecordAction: "Created"},
	}
	records.Scopes = append(records.Scopes, "crm.objects.companies.write")
	f.catalogs.use(t, records)
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	queue := calllog.NewQueue(store, calllog.QueueOptions{}, logr.Discard())
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- queue.Start(ctx) }()
	f.service.Calls = queue

	midnight := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	tok := f.current.Reveal()
	for _, c := range []struct {
		at           time.Duration // from midnight
		method, path string
		code         int
	}{
		{-1500 * time.Millisecond, "POST", "/crm/v3/objects/contacts", 200},
		{-1 * time.Millisecond, "POST", "/crm/v3/objects/contacts", 200},
		{-1 * time.Millisecond, "POST", "/crm/v3/objects/companies", 403}, // missing scope: not counted
		{0, "PATCH", "/crm/v3/objects/contacts/1", 200},
		{300 * time.Millisecond, "DELETE", "/crm/v3/objects/contacts/2", 200},
		{2 * time.Second, "POST", "/crm/v3/objects/contacts/merge", 200},
		{3 * time.Second, "GET", "/crm/v3/objects/contacts/3", 403}, // no route: not counted
	} {
		f.clock.SetTime(midnight.Add(c.at))
		a := f.checkAs(t, c.method, PathCheck, tok, map[string]string{"X-Original-Method": c.method, "X-Original-URL": "https://api.example.com" + c.path})
		if a.code != c.code {
			t.Fatalf("%s %s at %s: %d, want %d: %s", c.method, c.path, c.at, a.code, c.code, a.body)
		}
	}
	stop()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	counts, err := store.CountRecords(context.Background(), calllog.RecordQuery{FromDay: calllog.DayOf(midnight) - 1, ToDay: calllog.DayOf(midnight)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range counts {
		got = append(got, fmt.Sprintf("%s %s %s %d", calllog.StartOfDay(c.Day).Format(time.DateOnly), c.RecordType, c.Action, c.Count))
	}
	want := []string{"2026-11-24 contacts Created 2", "2026-11-25 contacts Deleted 1", "2026-11-25 contacts Merged 1", "2026-11-25 contacts Updated 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("record counts\n%v\nwant\n%v", got, want)
	}
}
