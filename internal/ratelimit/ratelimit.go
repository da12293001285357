// Package ratelimit counts calls per app in fixed 10-second windows and per
// account (namespace) per UTC day, and says whether one more call is allowed.
// It imports nothing from Kubernetes; time is passed in.
package ratelimit

import (
	"sync"
	"time"
)

// Window is the length of an app's rate-limit window.
const Window = 10 * time.Second

// Limits are the limits that apply to one call.
type Limits struct {
	// PerWindow is how many calls one app may make per Window.
	PerWindow int64
	// PerDay is how many calls one account may make per UTC day.
	PerDay int64
}

// Refusal says which limit refused a call.
type Refusal int

const (
	// NotRefused: the call is allowed.
	NotRefused Refusal = iota
	// AppWindow: the app used its calls for this 10-second window.
	AppWindow
	// AccountDay: the account used its calls for this UTC day.
	AccountDay
)

// Decision is the answer for one call, with what the rate-limit headers say.
type Decision struct {
	Refused        Refusal
	Limit          int64
	Remaining      int64
	DailyLimit     int64
	DailyRemaining int64
	// RetryAfter is how long until the limit that refused the call resets.
	RetryAfter time.Duration
}

// Allowed reports whether the call may proceed.
func (d Decision) Allowed() bool { return d.Refused == NotRefused }

// Limiter holds the counters. The zero value is not usable; use New.
type Limiter struct {
	mu       sync.Mutex
	apps     map[string]*counter
	accounts map[string]*counter
}

type counter struct {
	start time.Time // start of the current window or day
	n     int64
}

// New returns an empty Limiter.
func New() *Limiter {
	return &Limiter{apps: map[string]*counter{}, accounts: map[string]*counter{}}
}

// Take counts one call by app in account at now, if the limits allow it.
// A refused call does not count against either limit.
func (l *Limiter) Take(app, account string, lim Limits, now time.Time) Decision {
	winStart, dayStart := periods(now)

	l.mu.Lock()
	defer l.mu.Unlock()
	a := current(l.apps, app, winStart)
	d := current(l.accounts, account, dayStart)

	refused := NotRefused
	switch {
	case d.n >= lim.PerDay:
		refused = AccountDay
	case a.n >= lim.PerWindow:
		refused = AppWindow
	default:
		a.n++
		d.n++
	}
	return decision(refused, a.n, d.n, lim, winStart, dayStart, now)
}

// periods returns the start of the app window and of the UTC day that now
// falls in.
func periods(now time.Time) (window, day time.Time) {
	u := now.UTC()
	return now.Truncate(Window), time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
}

// decision is the answer for a call, from the limit that refused it (if
// any) and the app's and account's counts after it.
func decision(refused Refusal, appCalls, accountCalls int64, lim Limits, window, day, now time.Time) Decision {
	dec := Decision{Refused: refused, Limit: lim.PerWindow, DailyLimit: lim.PerDay,
		Remaining: max(lim.PerWindow-appCalls, 0), DailyRemaining: max(lim.PerDay-accountCalls, 0)}
	switch refused {
	case AccountDay:
		dec.RetryAfter = day.Add(24 * time.Hour).Sub(now)
	case AppWindow:
		dec.RetryAfter = window.Add(Window).Sub(now)
	}
	return dec
}

// Seed raises the account's count for the UTC day of now to calls, when it
// is lower: what a restarted replica learns from status, or a shared
// counter's last answer, so that the day does not start again from zero.
func (l *Limiter) Seed(account string, calls int64, now time.Time) {
	_, dayStart := periods(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := current(l.accounts, account, dayStart); d.n < calls {
		d.n = calls
	}
}

// Count counts a call that no limit refuses in the account's day.
func (l *Limiter) Count(account string, now time.Time) {
	_, dayStart := periods(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	current(l.accounts, account, dayStart).n++
}

// Used is the account's count for the UTC day of now. Limiter is always
// its own truth, so cached is false.
func (l *Limiter) Used(account string, now time.Time) (calls int64, cached bool) {
	_, dayStart := periods(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, ok := l.accounts[account]; ok && d.start.Equal(dayStart) {
		return d.n, false
	}
	return 0, false
}

// Forget drops an app's window counter, e.g. when the app is deleted.
func (l *Limiter) Forget(app string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.apps, app)
}

func current(m map[string]*counter, key string, start time.Time) *counter {
	c, ok := m[key]
	if !ok {
		c = &counter{start: start}
		m[key] = c
	}
	if !c.start.Equal(start) {
		c.start, c.n = start, 0
	}
	return c
}
