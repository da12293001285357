package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit/redistest"
)

// replica is one token-service replica's limiter.
func replica(addr, password string, errs *atomic.Int64) *Shared {
	return &Shared{
		Client:  redis.NewClient(&redis.Options{Addr: addr, Password: password, DialTimeout: 200 * time.Millisecond, MaxRetries: -1}),
		Prefix:  fmt.Sprintf("test%d", time.Now().UnixNano()),
		Timeout: 200 * time.Millisecond,
		Local:   New(),
		OnError: func(error) { errs.Add(1) },
	}
}

func TestSharedCountersAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, "")
	var errs atomic.Int64
	a, b := replica(srv.Addr(), "", &errs), replica(srv.Addr(), "", &errs)
	b.Prefix = a.Prefix
	lim := Limits{PerWindow: 100, PerDay: 1000}
	now := time.Date(2026, 3, 1, 9, 0, 3, 0, time.UTC)

	tests := []struct {
		name          string
		calls         int
		app           func(i int) string
		at            time.Time
		limits        Limits
		allowed       int
		refusedBy     Refusal
		retryAfter    time.Duration
		lastRemaining int64
	}{
		{name: "a burst over two replicas gets exactly the window", calls: 160, app: func(int) string { return "ns/crm" },
			at: now, limits: lim, allowed: 100, refusedBy: AppWindow, retryAfter: 7 * time.Second},
		{name: "the next window starts over", calls: 10, app: func(int) string { return "ns/crm" },
			at: now.Add(7 * time.Second), limits: lim, allowed: 10},
		{name: "the account's day holds across apps and replicas", calls: 40, app: func(i int) string { return fmt.Sprintf("ns/app-%d", i%4) },
			at: now.Add(20 * time.Second), limits: Limits{PerWindow: 100, PerDay: 140}, allowed: 30, refusedBy: AccountDay,
			retryAfter: 24*time.Hour - 9*time.Hour - 23*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			allowed := 0
			var refusals []Decision
			var wg sync.WaitGroup
			for i := range tt.calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := a
					if i%2 == 1 {
						r = b
					}
					dec := r.Take(tt.app(i), "ns", tt.limits, tt.at)
					mu.Lock()
					defer mu.Unlock()
					if dec.Allowed() {
						allowed++
					} else {
						refusals = append(refusals, dec)
					}
				}()
			}
			wg.Wait()
			if allowed != tt.allowed {
				t.Fatalf("%d calls allowed across two replicas, want exactly %d", allowed, tt.allowed)
			}
			for _, d := range refusals {
				if d.Refused != tt.refusedBy || d.RetryAfter != tt.retryAfter {
					t.Fatalf("refusal %+v, want %v with Retry-After %s", d, tt.refusedBy, tt.retryAfter)
				}
			}
		})
	}
	if n := errs.Load(); n != 0 {
		t.Fatalf("%d calls fell back to local counters with Redis up", n)
	}
}

func TestSharedFallsBackWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t, "")
	var errs atomic.Int64
	r := replica(srv.Addr(), "", &errs)
	lim := Limits{PerWindow: 5, PerDay: 1000}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for range 3 {
		if !r.Take("ns/crm", "ns", lim, now).Allowed() {
			t.Fatal("refused under the limit")
		}
	}
	srv.Stop()
	// Down: the replica answers from its own counters, which start empty.
	allowed := 0
	for range 8 {
		if r.Take("ns/crm", "ns", lim, now).Allowed() {
			allowed++
		}
	}
	if allowed != 5 || errs.Load() != 8 {
		t.Fatalf("with Redis down: %d allowed (want 5 from local counters), %d errors reported (want 8)", allowed, errs.Load())
	}
	// Back: the shared count (3 in this window) is used again.
	redistest.Start(t, srv.Port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		errsBefore := errs.Load()
		dec := r.Take("ns/crm", "ns", lim, now.Add(Window))
		if errs.Load() == errsBefore {
			if !dec.Allowed() || dec.Remaining != 4 {
				t.Fatalf("after Redis came back: %+v, want allowed with 4 remaining in a fresh window", dec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the limiter did not reach Redis again")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSharedWithPassword(t *testing.T) {
	srv := redistest.Start(t, "", "--requirepass", "s3cret-redis")
	var errs atomic.Int64
	good := replica(srv.Addr(), "s3cret-redis", &errs)
	if !good.Take("ns/a", "ns", Limits{PerWindow: 1, PerDay: 1}, time.Now()).Allowed() || errs.Load() != 0 {
		t.Fatalf("with the password: errors %d", errs.Load())
	}
	var gotErr error
	bad := replica(srv.Addr(), "wrong", &errs)
	bad.OnError = func(err error) { gotErr = err }
	bad.Take("ns/a", "ns", Limits{PerWindow: 1, PerDay: 1}, time.Now())
	if gotErr == nil || !strings.Contains(gotErr.Error(), "WRONGPASS") {
		t.Fatalf("a wrong password: error %v, want Redis's WRONGPASS", gotErr)
	}
}

// TestSharedFallbackKeepsTheDay: a replica that falls back to its own
// counters continues the account's day from Redis's last answer instead of
// starting it again; windows start over (they last seconds).
func TestSharedFallbackKeepsTheDay(t *testing.T) {
	srv := redistest.Start(t, "")
	var errs atomic.Int64
	r := replica(srv.Addr(), "", &errs)
	lim := Limits{PerWindow: 100, PerDay: 10}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range 7 {
		if !r.Take(fmt.Sprintf("ns/app-%d", i), "ns", lim, now).Allowed() {
			t.Fatal("refused under the limit")
		}
	}
	srv.Stop()
	allowed := 0
	for i := range 6 {
		if r.Take(fmt.Sprintf("ns/app-%d", i), "ns", lim, now).Allowed() {
			allowed++
		}
	}
	if allowed != 3 || errs.Load() != 6 {
		t.Fatalf("with Redis down: %d allowed, want the 3 left of the day; %d errors", allowed, errs.Load())
	}
}

func TestSeed(t *testing.T) {
	l := New()
	lim := Limits{PerWindow: 100, PerDay: 10}
	now := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	l.Seed("ns", 8, now)
	l.Seed("ns", 2, now) // lower: no change
	if d := l.Take("ns/a", "ns", lim, now); !d.Allowed() || d.DailyRemaining != 1 {
		t.Fatalf("after seeding 8 of 10: %+v", d)
	}
	if d := l.Take("ns/a", "ns", lim, now.Add(2*time.Minute)); !d.Allowed() || d.DailyRemaining != 9 {
		t.Fatalf("the next UTC day starts over: %+v", d)
	}
}

// The daily-usage endpoint reads the account's day from Redis, the count
// every replica shares; while Redis is down, the replica's last knowledge
// of it, marked cached.
func TestSharedUsed(t *testing.T) {
	srv := redistest.Start(t, "")
	var errs atomic.Int64
	a, b := replica(srv.Addr(), "", &errs), replica(srv.Addr(), "", &errs)
	b.Prefix = a.Prefix
	lim := Limits{PerWindow: 100, PerDay: 1000}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range 5 {
		r := a
		if i%2 == 1 {
			r = b
		}
		r.Take("ns/crm", "ns", lim, now)
	}
	for name, r := range map[string]*Shared{"a": a, "b": b} {
		if n, cached := r.Used("ns", now); n != 5 || cached {
			t.Fatalf("replica %s: %d calls (cached %v), want the shared 5", name, n, cached)
		}
	}
	b.Count("ns", now) // an authentication: no limit refuses it
	if n, _ := a.Used("ns", now); n != 6 {
		t.Fatalf("after a counted authentication: %d, want 6", n)
	}
	if n, cached := a.Used("other", now); n != 0 || cached {
		t.Fatalf("an account without calls: %d (cached %v), want 0", n, cached)
	}
	srv.Stop()
	if n, cached := b.Used("ns", now); n != 6 || !cached {
		t.Fatalf("with Redis down: %d calls (cached %v), want the last known 6, cached", n, cached)
	}
	if n, _ := b.Used("ns", now.Add(24*time.Hour)); n != 0 {
		t.Fatalf("the next day with Redis down: %d, want 0", n)
	}
}
