package ratelimit

import (
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return day.Add(d) }
	lim := Limits{PerWindow: 3, PerDay: 5}
	type call struct {
		app, account string
		at           time.Time
		want         Refusal
		remaining    int64
		daily        int64
		retryAfter   time.Duration
	}
	tests := []struct {
		name  string
		calls []call
	}{
		{"within the window", []call{
			{"a", "ns", at(time.Second), NotRefused, 2, 4, 0},
			{"a", "ns", at(2 * time.Second), NotRefused, 1, 3, 0},
			{"a", "ns", at(3 * time.Second), NotRefused, 0, 2, 0},
		}},
		{"the fourth call in a window is refused until the window ends", []call{
			{"a", "ns", at(1 * time.Second), NotRefused, 2, 4, 0},
			{"a", "ns", at(1 * time.Second), NotRefused, 1, 3, 0},
			{"a", "ns", at(1 * time.Second), NotRefused, 0, 2, 0},
			{"a", "ns", at(7500 * time.Millisecond), AppWindow, 0, 2, 2500 * time.Millisecond},
			{"a", "ns", at(10 * time.Second), NotRefused, 2, 1, 0},
		}},
		{"windows are per app", []call{
			{"a", "ns", at(0), NotRefused, 2, 4, 0},
			{"a", "ns", at(0), NotRefused, 1, 3, 0},
			{"a", "ns", at(0), NotRefused, 0, 2, 0},
			{"b", "ns", at(0), NotRefused, 2, 1, 0},
		}},
		{"the account's day holds across apps and resets at 00:00 UTC", []call{
			{"a", "ns", at(23 * time.Hour), NotRefused, 2, 4, 0},
			{"b", "ns", at(23 * time.Hour), NotRefused, 2, 3, 0},
			{"c", "ns", at(23 * time.Hour), NotRefused, 2, 2, 0},
			{"d", "ns", at(23 * time.Hour), NotRefused, 2, 1, 0},
			{"e", "ns", at(23 * time.Hour), NotRefused, 2, 0, 0},
			{"f", "ns", at(23*time.Hour + 30*time.Minute), AccountDay, 3, 0, 30 * time.Minute},
			{"f", "ns", at(24 * time.Hour), NotRefused, 2, 4, 0},
		}},
		{"accounts are separate", []call{
			{"a", "ns1", at(0), NotRefused, 2, 4, 0},
			{"a2", "ns2", at(0), NotRefused, 2, 4, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New()
			for i, c := range tt.calls {
				d := l.Take(c.app, c.account, lim, c.at)
				if d.Refused != c.want || d.Remaining != c.remaining || d.DailyRemaining != c.daily || d.RetryAfter != c.retryAfter {
					t.Fatalf("call %d: %+v, want refused=%v remaining=%d daily=%d retryAfter=%s", i, d, c.want, c.remaining, c.daily, c.retryAfter)
				}
				if d.Limit != lim.PerWindow || d.DailyLimit != lim.PerDay {
					t.Fatalf("call %d: limits %d/%d, want %d/%d", i, d.Limit, d.DailyLimit, lim.PerWindow, lim.PerDay)
				}
			}
		})
	}
}

func TestForget(t *testing.T) {
	l := New()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	lim := Limits{PerWindow: 1, PerDay: 10}
	l.Take("a", "ns", lim, now)
	l.Forget("a")
	if d := l.Take("a", "ns", lim, now); !d.Allowed() {
		t.Fatalf("after Forget the app's window should be fresh, got %+v", d)
	}
}

func BenchmarkTake(b *testing.B) {
	l := New()
	lim := Limits{PerWindow: 1 << 62, PerDay: 1 << 62}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		l.Take("default/billing-sync", "default", lim, now)
	}
}
