package calllog

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Retention drops the days that fall out of the log: at start (so a
// process that was down over midnight catches up) and at every UTC
// midnight after.
type Retention struct {
	Store Store
	// Keep is how long entries stay (DefaultRetention when zero); whole
	// UTC days are kept, today included.
	Keep  time.Duration
	Clock clock.WithTicker
	Log   logr.Logger
}

// FirstKeptDay is the oldest UTC day kept at now.
func (r *Retention) FirstKeptDay(now time.Time) int64 {
	keep := r.Keep
	if keep <= 0 {
		keep = DefaultRetention
	}
	days := max(int64(keep/(24*time.Hour)), 1)
	return DayOf(now) - days + 1
}

// MaxFutureSkew is how far ahead of the receiver's clock a sender's time
// may be: more than clock skew, less than what would sit on top of every
// listing.
const MaxFutureSkew = 10 * time.Minute

// InWindow reports whether an entry at t belongs in a log that keeps keep
// (DefaultRetention when zero) at now: not before the first day kept (it
// would be dropped at once, and on PostgreSQL make a partition of its own),
// nor more than MaxFutureSkew ahead (retention would never drop it, and it
// would head every list).
func InWindow(t, now time.Time, keep time.Duration) bool {
	r := Retention{Keep: keep}
	return !t.Before(StartOfDay(r.FirstKeptDay(now))) && !t.After(now.Add(MaxFutureSkew))
}

// NeedLeaderElection is false: dropping a day twice is harmless.
func (r *Retention) NeedLeaderElection() bool { return false }

// Start drops old days until ctx ends.
func (r *Retention) Start(ctx context.Context) error {
	for {
		now := r.Clock.Now()
		day := r.FirstKeptDay(now)
		if err := r.Store.DropBefore(ctx, day); err != nil && ctx.Err() == nil {
			r.Log.Error(err, "dropping old call-log days failed; trying again in a minute")
			select {
			case <-ctx.Done():
				return nil
			case <-r.Clock.After(time.Minute):
			}
			continue
		}
		r.Log.V(1).Info("call log retention", "oldestDayKept", StartOfDay(day).Format(time.DateOnly))
		next := StartOfDay(DayOf(now) + 1)
		select {
		case <-ctx.Done():
			return nil
		case <-r.Clock.After(next.Sub(now)):
		}
	}
}
