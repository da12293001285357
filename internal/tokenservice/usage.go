package tokenservice

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// usageDays is how many UTC days status.usage.daily keeps.
const usageDays = 30

// Usage counts each app's calls per UTC day in memory and writes them into
// PrivateApp.status.usage, only for apps whose counts changed.
type Usage struct {
	mu   sync.Mutex
	apps map[types.NamespacedName]*appUsage
}

type appUsage struct {
	// pending counts since the last flush, by UTC day (YYYY-MM-DD).
	pending map[string]*v1alpha1.DailyUsage
	last    time.Time
	// today is pending's entry for the day that starts at dayStart.
	dayStart time.Time
	today    *v1alpha1.DailyUsage
}

// NewUsage returns empty counters.
func NewUsage() *Usage { return &Usage{apps: map[types.NamespacedName]*appUsage{}} }

// Record counts one call: allowed, or refused by a rate limit.
func (u *Usage) Record(app types.NamespacedName, now time.Time, allowed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.apps[app]
	if a == nil {
		a = &appUsage{pending: map[string]*v1alpha1.DailyUsage{}}
		u.apps[app] = a
	}
	// The day's name is formatted once per app and day, not per call.
	dayStart := now.UTC().Truncate(24 * time.Hour)
	if !a.dayStart.Equal(dayStart) || a.today == nil {
		day := dayStart.Format(time.DateOnly)
		if a.pending[day] == nil {
			a.pending[day] = &v1alpha1.DailyUsage{Date: day}
		}
		a.dayStart, a.today = dayStart, a.pending[day]
	}
	d := a.today
	if allowed {
		d.Calls++
		if now.After(a.last) {
			a.last = now
		}
	} else {
		d.Refused++
	}
}

// take removes and returns what was counted since the last flush.
func (u *Usage) take() map[types.NamespacedName]*appUsage {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.apps
	u.apps = map[types.NamespacedName]*appUsage{}
	return out
}

// giveBack returns counts that could not be written, for the next flush.
func (u *Usage) giveBack(app types.NamespacedName, a *appUsage) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cur := u.apps[app]
	if cur == nil {
		u.apps[app] = a
		return
	}
	for day, d := range a.pending {
		if c := cur.pending[day]; c != nil {
			c.Calls += d.Calls
			c.Refused += d.Refused
		} else {
			cur.pending[day] = d
		}
	}
	if a.last.After(cur.last) {
		cur.last = a.last
	}
}

// FieldOwner is the field manager of the token service's status writes:
// managedFields show it owns status.usage and status.lastActivityTime, and
// nothing else of a PrivateApp.
const FieldOwner = "privateapp-token-service"

// Flusher writes the counts into status every Interval.
type Flusher struct {
	Client   client.Client
	Usage    *Usage
	Limits   LimitsConfig
	Accounts AccountLabels
	Clock    clock.PassiveClock
	Interval time.Duration
	Log      logr.Logger
}

// Start flushes until ctx ends, then once more.
func (f *Flusher) Start(ctx context.Context) error {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.Flush(context.Background())
			return nil
		case <-t.C:
			f.Flush(ctx)
		}
	}
}

// NeedLeaderElection is false: every replica writes the calls it answered.
func (f *Flusher) NeedLeaderElection() bool { return false }

// Flush writes every app's new counts into its status.
func (f *Flusher) Flush(ctx context.Context) {
	for key, a := range f.Usage.take() {
		if err := f.flushApp(ctx, key, a); err != nil {
			f.Log.Error(err, "writing usage; will retry", "app", key.String())
			f.Usage.giveBack(key, a)
		}
	}
}

// flushApp adds the counts to the app's status by server-side apply of the
// two fields the token service owns. The apply carries the resourceVersion
// it read, so that two replicas adding their counts at once do not lose
// either's: the second gets a conflict and adds its counts on the next
// flush.
func (f *Flusher) flushApp(ctx context.Context, key types.NamespacedName, a *appUsage) error {
	app := &v1alpha1.PrivateApp{}
	if err := f.Client.Get(ctx, key, app); err != nil {
		return client.IgnoreNotFound(err)
	}
	edition, addOn := "", false
	if f.Accounts != nil {
		edition, addOn = f.Accounts.Labels(app.Namespace)
	}
	usage, last := addUsage(app.Status, a, f.Limits.For(edition, addOn), f.Clock.Now())
	ac, err := usageApply(app, usage, last)
	if err != nil {
		return err
	}
	return f.Client.Status().Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// addUsage is the app's usage and last activity with the counts a added:
// the last 30 UTC days, today's totals and the limits in force. Both are
// whole values: an apply that left a field out would remove it.
func addUsage(st v1alpha1.PrivateAppStatus, a *appUsage, lim ratelimit.Limits, now time.Time) (*v1alpha1.UsageStatus, *metav1.Time) {
	today := now.UTC().Format(time.DateOnly)
	oldest := now.UTC().AddDate(0, 0, -(usageDays - 1)).Format(time.DateOnly)

	byDay := map[string]v1alpha1.DailyUsage{}
	if st.Usage != nil {
		for _, d := range st.Usage.Daily {
			byDay[d.Date] = d
		}
	}
	for day, d := range a.pending {
		e := byDay[day]
		e.Date, e.Calls, e.Refused = day, e.Calls+d.Calls, e.Refused+d.Refused
		byDay[day] = e
	}
	usage := &v1alpha1.UsageStatus{}
	for day := oldest; day <= today; day = nextDay(day) {
		if d, ok := byDay[day]; ok {
			usage.Daily = append(usage.Daily, d)
		}
	}
	t := byDay[today]
	usage.CallsToday, usage.RefusedToday = t.Calls, t.Refused
	usage.LimitPer10s, usage.DailyLimit = lim.PerWindow, lim.PerDay

	last := st.LastActivityTime.DeepCopy()
	if !a.last.IsZero() && (last == nil || a.last.After(last.Time)) {
		at := metav1.NewTime(a.last)
		last = &at
	}
	return usage, last
}

// usageStatus is the part of PrivateApp status the token service applies.
type usageStatus struct {
	Usage            *v1alpha1.UsageStatus `json:"usage,omitempty"`
	LastActivityTime *metav1.Time          `json:"lastActivityTime,omitempty"`
}

// usageApply is the apply configuration of the token service's fields of
// app's status, preconditioned on the resourceVersion app was read at.
func usageApply(app *v1alpha1.PrivateApp, usage *v1alpha1.UsageStatus, last *metav1.Time) (runtime.ApplyConfiguration, error) {
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&usageStatus{Usage: usage, LastActivityTime: last})
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PrivateApp"))
	u.SetNamespace(app.Namespace)
	u.SetName(app.Name)
	u.SetResourceVersion(app.ResourceVersion)
	return client.ApplyConfigurationFromUnstructured(u), nil
}

func nextDay(day string) string {
	t, _ := time.Parse(time.DateOnly, day)
	return t.AddDate(0, 0, 1).Format(time.DateOnly)
}
