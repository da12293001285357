package tokenservice

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

func TestAddUsage(t *testing.T) {
	now := time.Date(2026, 3, 31, 15, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	lim := ratelimit.Limits{PerWindow: 100, PerDay: 250000}
	counted := func(calls ...time.Time) *appUsage {
		u := NewUsage()
		key := types.NamespacedName{Namespace: "ns", Name: "app"}
		for _, c := range calls {
			u.Record(key, c, true)
		}
		u.Record(key, now, false)
		return u.take()[key]
	}
	tests := []struct {
		name      string
		status    v1alpha1.PrivateAppStatus
		counts    *appUsage
		wantUsage *v1alpha1.UsageStatus
		wantLast  *metav1.Time
	}{{
		name:   "first flush",
		counts: counted(now.Add(-time.Minute), now.Add(-time.Second)),
		wantUsage: &v1alpha1.UsageStatus{CallsToday: 2, RefusedToday: 1, LimitPer10s: 100, DailyLimit: 250000,
			Daily: []v1alpha1.DailyUsage{{Date: "2026-03-31", Calls: 2, Refused: 1}}},
		wantLast: at(-time.Second),
	}, {
		name: "adds to today, keeps 30 days, drops older",
		status: v1alpha1.PrivateAppStatus{
			Usage: &v1alpha1.UsageStatus{CallsToday: 5, Daily: []v1alpha1.DailyUsage{
				{Date: "2026-03-01", Calls: 9}, {Date: "2026-03-02", Calls: 3}, {Date: "2026-03-31", Calls: 5}}},
			LastActivityTime: at(-time.Hour),
		},
		counts: counted(now.Add(-time.Minute)),
		wantUsage: &v1alpha1.UsageStatus{CallsToday: 6, RefusedToday: 1, LimitPer10s: 100, DailyLimit: 250000,
			Daily: []v1alpha1.DailyUsage{{Date: "2026-03-02", Calls: 3}, {Date: "2026-03-31", Calls: 6, Refused: 1}}},
		wantLast: at(-time.Minute),
	}, {
		// An apply that left lastActivityTime out would remove it.
		name:   "only refusals keep the last activity",
		status: v1alpha1.PrivateAppStatus{LastActivityTime: at(-time.Hour)},
		counts: counted(),
		wantUsage: &v1alpha1.UsageStatus{RefusedToday: 1, LimitPer10s: 100, DailyLimit: 250000,
			Daily: []v1alpha1.DailyUsage{{Date: "2026-03-31", Refused: 1}}},
		wantLast: at(-time.Hour),
	}, {
		name:   "another replica's later activity stays",
		status: v1alpha1.PrivateAppStatus{LastActivityTime: at(0)},
		counts: counted(now.Add(-time.Minute)),
		wantUsage: &v1alpha1.UsageStatus{CallsToday: 1, RefusedToday: 1, LimitPer10s: 100, DailyLimit: 250000,
			Daily: []v1alpha1.DailyUsage{{Date: "2026-03-31", Calls: 1, Refused: 1}}},
		wantLast: at(0),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			usage, last := addUsage(tt.status, tt.counts, lim, now)
			if d := cmp.Diff(tt.wantUsage, usage); d != "" {
				t.Errorf("usage (-want +got):\n%s", d)
			}
			if !last.Equal(tt.wantLast) {
				t.Errorf("lastActivityTime = %v, want %v", last, tt.wantLast)
			}
		})
	}
}

// The apply names the app at the version it was read and carries only the
// two fields the token service owns.
func TestUsageApply(t *testing.T) {
	app := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app", ResourceVersion: "42"},
		Spec:   v1alpha1.PrivateAppSpec{DisplayName: "App", Scopes: []string{"crm.objects.contacts.read"}},
		Status: v1alpha1.PrivateAppStatus{Connection: v1alpha1.ConnectionConnected, SecretName: "app-token"}}
	last := metav1.NewTime(time.Date(2026, 3, 31, 15, 0, 0, 0, time.UTC))
	ac, err := usageApply(app, &v1alpha1.UsageStatus{CallsToday: 3}, &last)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"privateapps.dev/v1alpha1","kind":"PrivateApp","metadata":{"name":"app","namespace":"ns","resourceVersion":"42"},` +
		`"status":{"lastActivityTime":"2026-03-31T15:00:00Z","usage":{"callsToday":3}}}`
	if string(got) != want {
		t.Errorf("apply = %s\nwant    %s", got, want)
	}
}
