package tokenservice

import (
	"net/http"
	"time"
)

// PathDailyUsage is HubSpot's daily-usage endpoint for private apps.
const PathDailyUsage = "/account-info/v3/api-usage/daily/private-apps"

// DailyUsageName is the name HubSpot gives the one limit it reports.
const DailyUsageName = "private-apps-api-calls-daily"

// Fetch statuses of a DailyUsageResult.
const (
	// FetchSuccess: the count is the account's, as the limits count it
	// (this replica's own counter, or the shared Redis counter).
	FetchSuccess = "SUCCESS"
	// FetchCached: the shared counter did not answer; the count is the
	// one this replica last learned, plus what it counted since.
	FetchCached = "CACHED"
)

// DailyUsage is the answer of PathDailyUsage, in HubSpot's shape.
type DailyUsage struct {
	Results []DailyUsageResult `json:"results"`
}

// DailyUsageResult is one limit of the account and how much of it is used.
type DailyUsageResult struct {
	// Name is always DailyUsageName.
	Name string `json:"name"`
	// UsageLimit is the account's (namespace's) calls per UTC day.
	UsageLimit int64 `json:"usageLimit"`
	// CurrentUsage is the calls the account's apps made today (UTC) that
	// the limits let through: what X-RateLimit-Daily-Remaining is taken
	// from.
	CurrentUsage int64 `json:"currentUsage"`
	// CollectedAt is when the count was read.
	CollectedAt string `json:"collectedAt"`
	// FetchStatus is FetchSuccess or FetchCached.
	FetchStatus string `json:"fetchStatus"`
	// ResetsAt is the next UTC midnight, when the count starts again.
	ResetsAt string `json:"resetsAt"`
}

// dailyUsage answers GET PathDailyUsage for the account (namespace) of the
// app whose token is presented. Reading the usage is not a call that
// counts: it takes nothing from the app's or the account's limits. It is
// an introspection, limited per source like access-token-info.
func (s *Service) dailyUsage(w http.ResponseWriter, r *http.Request) {
	if !s.introspectionAllowed(w, r) {
		return
	}
	text, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		unauthorized(w, "missing", "no Bearer token: send the header Authorization: Bearer <token> with an app's token")
		return
	}
	now := s.Clock.Now()
	v := s.validate(text, now)
	switch v.status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		unauthorized(w, v.reason, v.message)
		return
	default:
		refusals.WithLabelValues(v.reason).Inc()
		w.Header().Set("WWW-Authenticate", challengeInvalid)
		writeError(w, v.status, categoryDisconnected, v.message)
		return
	}
	account := v.match.App.Namespace
	used, cached := s.Limiter.Used(account, now)
	status := FetchSuccess
	if cached {
		status = FetchCached
	}
	day := now.UTC().Truncate(24 * time.Hour)
	writeJSON(w, http.StatusOK, DailyUsage{Results: []DailyUsageResult{{
		Name:         DailyUsageName,
		UsageLimit:   s.limitsFor(account).PerDay,
		CurrentUsage: used,
		CollectedAt:  now.UTC().Format("2006-01-02T15:04:05.000Z"),
		FetchStatus:  status,
		ResetsAt:     day.Add(24 * time.Hour).Format(time.RFC3339),
	}}})
}
