package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/postgres/pgtest"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog/storetest"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) calllog.Store {
		s, err := postgres.Open(context.Background(), server.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReplicasMigrateTogether: two replicas opening one database at once
// both come up, and see each other's writes.
func TestReplicasMigrateTogether(t *testing.T) {
	dsn := server.NewDatabase(t)
	ctx := context.Background()
	stores := make(chan *postgres.Store, 2)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := postgres.Open(ctx, dsn)
			errs <- err
			stores <- s
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	a, b := <-stores, <-stores
	defer a.Close()
	defer b.Close()
	e := calllog.Entry{ID: "x", Namespace: "ns", App: "app", Code: 200, Final: true}
	e.Normalize()
	if err := a.Write(ctx, []calllog.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, []calllog.Entry{e}); err != nil {
		t.Fatal(err)
	}
	p, err := b.List(ctx, calllog.Query{})
	if err != nil || len(p.Entries) != 1 {
		t.Fatalf("%+v, %v", p.Entries, err)
	}
}

// TestUpgradeKeepsEntries: a database written at schema version 1 is
// brought to the current version on Open, with its entries kept and the
// index by code that version 2 adds.
func TestUpgradeKeepsEntries(t *testing.T) {
	ctx := context.Background()
	dsn := server.NewDatabase(t)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	e := calllog.Entry{ID: "x", Namespace: "ns", App: "app", Code: 503, Final: true, Time: time.Now()}
	e.Normalize()
	part := "calls_" + e.Time.UTC().Format("20060102")
	for _, stmt := range []string{
		"CREATE TABLE privateapps_schema (version integer NOT NULL)", postgres.Migrations[0], "INSERT INTO privateapps_schema VALUES (1)",
		fmt.Sprintf("CREATE TABLE %s PARTITION OF calls FOR VALUES FROM (%d) TO (%d)", part, e.Day(), e.Day()+1),
		fmt.Sprintf(`INSERT INTO calls VALUES ('ns', 'app', %d, 'x', %d, '', '', '', '', '', 503, '', '', 0, '', true)`, e.Day(), e.Time.UnixMilli()),
	} {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int
	if err := c.QueryRow(ctx, "SELECT version FROM privateapps_schema").Scan(&version); err != nil || version != len(postgres.Migrations) {
		t.Errorf("schema version %d (%v), want %d", version, err, len(postgres.Migrations))
	}
	var indexes int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%(namespace, app, code,%'", part).Scan(&indexes); err != nil || indexes != 1 {
		t.Errorf("%d indexes by code on %s (%v), want 1", indexes, part, err)
	}
	p, err := s.List(ctx, calllog.Query{App: "app", CodeClass: 5})
	if err != nil || len(p.Entries) != 1 || p.Entries[0].ID != "x" {
		t.Errorf("after the upgrade: %+v, %v", p.Entries, err)
	}
}
