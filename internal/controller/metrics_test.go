package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

func TestAppsByConnection(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	app := func(name string, c v1alpha1.ConnectionState) *v1alpha1.PrivateApp {
		return &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Status: v1alpha1.PrivateAppStatus{Connection: c}}
	}
	r := fake.NewClientBuilder().WithScheme(s).WithObjects(
		app("a", v1alpha1.ConnectionConnected), app("b", v1alpha1.ConnectionConnected),
		app("c", v1alpha1.ConnectionDisconnected), app("d", v1alpha1.ConnectionPending),
	).Build()
	want := `
# HELP privateapps_apps PrivateApps by connection state (Pending, Connected, Disconnected, Expired, Error; empty while the first token is on its way).
# TYPE privateapps_apps gauge
privateapps_apps{connection="Connected"} 2
privateapps_apps{connection="Disconnected"} 1
privateapps_apps{connection="Error"} 0
privateapps_apps{connection="Expired"} 0
privateapps_apps{connection="Pending"} 1
`
	if err := testutil.CollectAndCompare(AppsByConnection{Reader: r}, strings.NewReader(want), "privateapps_apps"); err != nil {
		t.Fatal(err)
	}
}

// TestAppMetrics: each app's calls, token times and state, each account's
// day against its limit, and the limit on per-app series.
func TestAppMetrics(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(d)) }
	expires, left := at(72*time.Hour), at(-time.Hour)
	rotating := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing"}, Status: v1alpha1.PrivateAppStatus{
		Connection: v1alpha1.ConnectionConnected,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "TokenIssued", LastTransitionTime: at(-2 * time.Hour)}},
		Token: &v1alpha1.TokenStatus{IssuedAt: at(-time.Hour), ExpiresAt: &expires,
			Previous: &v1alpha1.PreviousTokenStatus{ExpiresAt: at(48 * time.Hour)}},
		Usage: &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: "2026-11-23", Calls: 70}, {Date: "2026-11-24", Calls: 600, Refused: 4}}},
	}}
	expired := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "old"}, Status: v1alpha1.PrivateAppStatus{
		Connection: v1alpha1.ConnectionExpired,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "TokenExpired", LastTransitionTime: left}},
		Token:      &v1alpha1.TokenStatus{IssuedAt: at(-1000 * time.Hour), ExpiresAt: &left},
		Usage:      &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: "2026-11-24", Calls: 250}}},
	}}
	r := fake.NewClientBuilder().WithScheme(s).WithObjects(rotating, expired).Build()
	want := `
# HELP privateapps_account_calls_today Calls the account's (namespace's) apps made today (UTC), from their status.usage.
# TYPE privateapps_account_calls_today gauge
privateapps_account_calls_today{namespace="team-a"} 850
# HELP privateapps_account_daily_limit The account's limit of calls per UTC day.
# TYPE privateapps_account_daily_limit gauge
privateapps_account_daily_limit{namespace="team-a"} 1000
# HELP privateapps_app_calls_today Calls the app made today (UTC) that the limits let through.
# TYPE privateapps_app_calls_today gauge
privateapps_app_calls_today{app="billing",namespace="team-a"} 600
privateapps_app_calls_today{app="old",namespace="team-a"} 250
# HELP privateapps_app_refused_today Calls of the app refused today (UTC) by rate limits or because it was disconnected.
# TYPE privateapps_app_refused_today gauge
privateapps_app_refused_today{app="billing",namespace="team-a"} 4
privateapps_app_refused_today{app="old",namespace="team-a"} 0
# HELP privateapps_app_token_expiry_seconds Seconds until the app's current token expires, negative once it has; only apps with spec.tokenLifetime.
# TYPE privateapps_app_token_expiry_seconds gauge
privateapps_app_token_expiry_seconds{app="billing",namespace="team-a"} 259200
privateapps_app_token_expiry_seconds{app="old",namespace="team-a"} -3600
# HELP privateapps_app_grace_period_end_timestamp_seconds When the app's previous token stops working (Unix seconds); only during a grace period.
# TYPE privateapps_app_grace_period_end_timestamp_seconds gauge
privateapps_app_grace_period_end_timestamp_seconds{app="billing",namespace="team-a"} 1.7956944e+09
# HELP privateapps_app_connection_since_timestamp_seconds Since when the app is in its connection state (the Ready condition's last transition, Unix seconds); one series per app, labelled with the state.
# TYPE privateapps_app_connection_since_timestamp_seconds gauge
privateapps_app_connection_since_timestamp_seconds{app="billing",connection="Connected",namespace="team-a"} 1.7955144e+09
privateapps_app_connection_since_timestamp_seconds{app="old",connection="Expired",namespace="team-a"} 1.795518e+09
# HELP privateapps_app_metrics_truncated 1 when more apps exist than --app-metrics-limit and some have no series of their own.
# TYPE privateapps_app_metrics_truncated gauge
privateapps_app_metrics_truncated 0
`
	c := AppsByConnection{Reader: r, Clock: clocktesting.NewFakePassiveClock(now)}
	names := []string{"privateapps_account_calls_today", "privateapps_account_daily_limit", "privateapps_app_calls_today", "privateapps_app_refused_today",
		"privateapps_app_token_expiry_seconds", "privateapps_app_grace_period_end_timestamp_seconds", "privateapps_app_connection_since_timestamp_seconds",
		"privateapps_app_metrics_truncated"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// A limit of one app: the other has no series, the accounts still
	// count it, and the truncation shows.
	c.Limit = 1
	if n := testutil.CollectAndCount(c, "privateapps_app_calls_today"); n != 1 {
		t.Errorf("%d app series with a limit of 1", n)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP privateapps_app_metrics_truncated 1 when more apps exist than --app-metrics-limit and some have no series of their own.
# TYPE privateapps_app_metrics_truncated gauge
privateapps_app_metrics_truncated 1
`), "privateapps_app_metrics_truncated"); err != nil {
		t.Error(err)
	}
}
