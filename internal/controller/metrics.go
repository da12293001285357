package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// DefaultAppMetricsLimit is how many apps get series of their own by
// default: each app adds up to eight series.
const DefaultAppMetricsLimit = 5000

// AppsByConnection is a Prometheus collector of the apps as their status
// says, read from the manager's cache at scrape time: how many are in each
// connection state, each account's calls today against its daily limit,
// and, per app (up to Limit apps), its calls and refusals today, its
// token's issue and expiry times, the end of a grace period and since when
// it is in its connection state. Per-app series are bounded by the number
// of apps (at most 20 per namespace, and Limit in all); past Limit, apps
// are left out in name order and privateapps_app_metrics_truncated says so.
type AppsByConnection struct {
	Reader client.Reader
	// Limit is the most apps with series of their own; 0 is
	// DefaultAppMetricsLimit, negative none.
	Limit int
	Clock clock.PassiveClock
}

var (
	appsDesc = prometheus.NewDesc("privateapps_apps",
		"PrivateApps by connection state (Pending, Connected, Disconnected, Expired, Error; empty while the first token is on its way).",
		[]string{"connection"}, nil)
	accountCallsDesc = prometheus.NewDesc("privateapps_account_calls_today",
		"Calls the account's (namespace's) apps made today (UTC), from their status.usage.", []string{"namespace"}, nil)
	accountLimitDesc = prometheus.NewDesc("privateapps_account_daily_limit",
		"The account's limit of calls per UTC day.", []string{"namespace"}, nil)
	appCallsDesc = prometheus.NewDesc("privateapps_app_calls_today",
		"Calls the app made today (UTC) that the limits let through.", []string{"namespace", "app"}, nil)
	appRefusedDesc = prometheus.NewDesc("privateapps_app_refused_today",
		"Calls of the app refused today (UTC) by rate limits or because it was disconnected.", []string{"namespace", "app"}, nil)
	appIssuedDesc = prometheus.NewDesc("privateapps_app_token_issued_timestamp_seconds",
		"When the app's current token was issued (Unix seconds).", []string{"namespace", "app"}, nil)
	appExpiryDesc = prometheus.NewDesc("privateapps_app_token_expiry_timestamp_seconds",
		"When the app's current token expires (Unix seconds); only apps with spec.tokenLifetime.", []string{"namespace", "app"}, nil)
	appExpiryLeftDesc = prometheus.NewDesc("privateapps_app_token_expiry_seconds",
		"Seconds until the app's current token expires, negative once it has; only apps with spec.tokenLifetime.", []string{"namespace", "app"}, nil)
	appGraceDesc = prometheus.NewDesc("privateapps_app_grace_period_end_timestamp_seconds",
		"When the app's previous token stops working (Unix seconds); only during a grace period.", []string{"namespace", "app"}, nil)
	appStateDesc = prometheus.NewDesc("privateapps_app_connection_since_timestamp_seconds",
		"Since when the app is in its connection state (the Ready condition's last transition, Unix seconds); one series per app, labelled with the state.",
		[]string{"namespace", "app", "connection"}, nil)
	truncatedDesc = prometheus.NewDesc("privateapps_app_metrics_truncated",
		"1 when more apps exist than --app-metrics-limit and some have no series of their own.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c AppsByConnection) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appsDesc, accountCallsDesc, accountLimitDesc, appCallsDesc, appRefusedDesc, appIssuedDesc,
		appExpiryDesc, appExpiryLeftDesc, appGraceDesc, appStateDesc, truncatedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c AppsByConnection) Collect(ch chan<- prometheus.Metric) {
	var apps v1alpha1.PrivateAppList
	if err := c.Reader.List(context.Background(), &apps); err != nil {
		return
	}
	now := time.Now()
	if c.Clock != nil {
		now = c.Clock.Now()
	}
	limit := c.Limit
	if limit == 0 {
		limit = DefaultAppMetricsLimit
	}
	counts := map[v1alpha1.ConnectionState]int{
		v1alpha1.ConnectionPending: 0, v1alpha1.ConnectionConnected: 0, v1alpha1.ConnectionDisconnected: 0,
		v1alpha1.ConnectionExpired: 0, v1alpha1.ConnectionError: 0,
	}
	type account struct{ calls, limit int64 }
	accounts := map[string]*account{}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// The list is sorted by namespace and name, so the apps left out past
	// the limit are the same on every scrape.
	for i := range apps.Items {
		a := &apps.Items[i]
		counts[a.Status.Connection]++
		used := a.UsageOn(now)
		calls, refused := used.Calls, used.Refused
		if u := a.Status.Usage; u != nil {
			acc := accounts[a.Namespace]
			if acc == nil {
				acc = &account{}
				accounts[a.Namespace] = acc
			}
			acc.calls += calls
			acc.limit = max(acc.limit, u.DailyLimit)
		}
		if i >= limit {
			continue
		}
		ns, name := a.Namespace, a.Name
		gauge(appCallsDesc, float64(calls), ns, name)
		gauge(appRefusedDesc, float64(refused), ns, name)
		if t := a.Status.Token; t != nil {
			gauge(appIssuedDesc, float64(t.IssuedAt.Unix()), ns, name)
			if t.ExpiresAt != nil {
				gauge(appExpiryDesc, float64(t.ExpiresAt.Unix()), ns, name)
				gauge(appExpiryLeftDesc, t.ExpiresAt.Sub(now).Seconds(), ns, name)
			}
			if p := t.Previous; p != nil && p.ExpiresAt.After(now) {
				gauge(appGraceDesc, float64(p.ExpiresAt.Unix()), ns, name)
			}
		}
		if a.Status.Connection != "" {
			since := a.CreationTimestamp.Time
			if r := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady); r != nil {
				since = r.LastTransitionTime.Time
			}
			gauge(appStateDesc, float64(since.Unix()), ns, name, string(a.Status.Connection))
		}
	}
	for state, n := range counts {
		gauge(appsDesc, float64(n), string(state))
	}
	for ns, acc := range accounts {
		gauge(accountCallsDesc, float64(acc.calls), ns)
		if acc.limit > 0 {
			gauge(accountLimitDesc, float64(acc.limit), ns)
		}
	}
	truncated := 0.0
	if limit >= 0 && len(apps.Items) > limit || limit < 0 && len(apps.Items) > 0 {
		truncated = 1
	}
	gauge(truncatedDesc, truncated)
}
