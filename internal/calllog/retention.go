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
