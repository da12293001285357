package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"

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
