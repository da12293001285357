package controller

import (
	"testing"
	"time"
)

func TestDecideSlot(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name         string
		apps         []capEntry
		app          string
		limit        int
		wantGranted  bool
		wantPosition int
		wantHolders  int
	}{
		{
			name: "room for everyone",
			apps: []capEntry{{name: "a", created: at(0)}, {name: "b", created: at(1)}},
			app:  "b", limit: 20, wantGranted: true, wantPosition: 2,
		},
		{
			name: "oldest waiting app gets the last slot",
			apps: []capEntry{
				{name: "h", created: at(0), hasToken: true},
				{name: "late", created: at(5)}, {name: "early", created: at(3)},
			},
			app: "early", limit: 2, wantGranted: true, wantPosition: 1, wantHolders: 1,
		},
		{
			name: "younger app waits for the last slot",
			apps: []capEntry{
				{name: "h", created: at(0), hasToken: true},
				{name: "late", created: at(5)}, {name: "early", created: at(3)},
			},
			app: "late", limit: 2, wantGranted: false, wantPosition: 2, wantHolders: 1,
		},
		{
			name: "same second: name decides",
			apps: []capEntry{{name: "b", created: at(1)}, {name: "a", created: at(1)}},
			app:  "b", limit: 1, wantGranted: false, wantPosition: 2,
		},
		{
			name: "holders keep their slots when the limit is lowered",
			apps: []capEntry{
				{name: "x", created: at(9), hasToken: true}, {name: "y", created: at(9), hasToken: true},
				{name: "old", created: at(0)},
			},
			app: "old", limit: 1, wantGranted: false, wantPosition: 1, wantHolders: 2,
		},
		{
			name: "apps being deleted free their slot",
			apps: []capEntry{
				{name: "gone", created: at(0), hasToken: true, excluded: true},
				{name: "next", created: at(2)},
			},
			app: "next", limit: 1, wantGranted: true, wantPosition: 1,
		},
		{
			name: "apps in a Secret conflict do not hold a place in the queue",
			apps: []capEntry{
				{name: "conflict", created: at(0), excluded: true},
				{name: "next", created: at(2)},
			},
			app: "next", limit: 1, wantGranted: true, wantPosition: 1,
		},
		{
			name: "limit zero grants nothing",
			apps: []capEntry{{name: "a", created: at(0)}},
			app:  "a", limit: 0, wantGranted: false, wantPosition: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideSlot(tt.apps, tt.app, tt.limit)
			if d.granted != tt.wantGranted || d.position != tt.wantPosition || d.holders != tt.wantHolders {
				t.Fatalf("decideSlot = %+v, want granted=%v position=%d holders=%d", d, tt.wantGranted, tt.wantPosition, tt.wantHolders)
			}
		})
	}
}
