package tokenservice

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
)

// TestDailyUsage checks HubSpot's daily-usage answer: its documented shape,
// the account's count as the limits and status.usage see it, and refusals
// that say what is wrong.
func TestDailyUsage(t *testing.T) {
	f := newFixture(t)
	other, suspended := mustNew(t), mustNew(t)
	f.tokens = append(f.tokens, other.Reveal(), suspended.Reveal())
	f.ix.Set(app("team-a", "billing", other, nil, time.Time{}, nil))
	s := app("team-a", "paused", suspended, nil, time.Time{}, nil)
	s.Spec.Suspend = true
	f.ix.Set(s)
	f.clock.SetTime(t0.Add(3*time.Hour + 25*time.Millisecond))

	// Seven checks by two apps of the account; one refused (suspended),
	// which counts nowhere.
	for i := range 7 {
		tok := f.current
		if i%2 == 1 {
			tok = other
		}
		if a := f.do(t, http.MethodGet, PathCheck, "Bearer "+tok.Reveal(), nil); a.code != 200 {
			t.Fatalf("check %d: %d %s", i, a.code, a.body)
		}
	}
	f.do(t, http.MethodGet, PathCheck, "Bearer "+suspended.Reveal(), nil)
	// An authentication by the kube-apiserver is a call too (no limit
	// refuses it, but it counts in the day).
	review, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: other.Reveal()}})
	if a := f.do(t, http.MethodPost, PathTokenReview, "", review); a.code != 200 || !strings.Contains(string(a.body), `"authenticated":true`) {
		t.Fatalf("token review: %d %s", a.code, a.body)
	}

	read := func() DailyUsageResult {
		t.Helper()
		a := f.do(t, http.MethodGet, PathDailyUsage, "Bearer "+other.Reveal(), nil)
		if a.code != 200 || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("daily usage: %d %s", a.code, a.body)
		}
		// HubSpot's shape, exactly: one result with six fields.
		var raw map[string][]map[string]any
		if err := json.Unmarshal(a.body, &raw); err != nil || len(raw) != 1 || len(raw["results"]) != 1 {
			t.Fatalf("answer %s is not {\"results\": [one result]}", a.body)
		}
		for _, k := range []string{"name", "usageLimit", "currentUsage", "collectedAt", "fetchStatus", "resetsAt"} {
			if _, ok := raw["results"][0][k]; !ok {
				t.Fatalf("answer %s has no %q", a.body, k)
			}
		}
		if len(raw["results"][0]) != 6 {
			t.Fatalf("answer %s has fields HubSpot's has not", a.body)
		}
		var u DailyUsage
		if err := json.Unmarshal(a.body, &u); err != nil {
			t.Fatal(err)
		}
		return u.Results[0]
	}
	got := read()
	want := DailyUsageResult{Name: "private-apps-api-calls-daily", UsageLimit: 500000, CurrentUsage: 8,
		CollectedAt: "2026-03-01T15:00:00.025Z", FetchStatus: "SUCCESS", ResetsAt: "2026-03-02T00:00:00Z"}
	if got != want {
		t.Fatalf("daily usage %+v, want %+v", got, want)
	}
	// Reading the usage is not a call: it does not count.
	if got := read(); got.CurrentUsage != 8 {
		t.Fatalf("after reading it twice: %d calls, want 8", got.CurrentUsage)
	}
	// The same count status.usage receives, summed over the account's apps.
	var calls int64
	for key, a := range f.usage.take() {
		if key.Namespace == "team-a" {
			calls += a.pending["2026-03-01"].Calls
		}
	}
	if calls != 8 {
		t.Fatalf("status.usage would get %d calls for the account, the endpoint says 8", calls)
	}
	// Another account's day is its own; a new UTC day starts at zero.
	f.clock.SetTime(t0.Add(12 * time.Hour))
	if got := read(); got.CurrentUsage != 0 || got.ResetsAt != "2026-03-03T00:00:00Z" {
		t.Fatalf("the next day: %+v, want 0 calls, resetting at 2026-03-03T00:00:00Z", got)
	}

	const invalid = `Bearer realm="privateapps", error="invalid_token"`
	for _, tt := range []struct {
		name, method, auth string
		code               int
		msg                string
		challenge          string // RFC 6750's WWW-Authenticate
	}{
		{"no token", http.MethodGet, "", 401, "Authorization: Bearer <token>", `Bearer realm="privateapps"`},
		{"unknown token", http.MethodGet, "Bearer " + mustNew(t).Reveal(), 401, "unknown or has been revoked", invalid},
		{"malformed token", http.MethodGet, "Bearer pat_nope", 401, "malformed", invalid},
		{"disconnected app", http.MethodGet, "Bearer " + suspended.Reveal(), 403, "disconnected", invalid},
		{"POST", http.MethodPost, "Bearer " + f.current.Reveal(), 405, "takes GET", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(t, tt.method, PathDailyUsage, tt.auth, nil)
			if a.code != tt.code || !strings.Contains(errorBody(t, a).Message, tt.msg) {
				t.Fatalf("%d %s, want %d with %q", a.code, a.body, tt.code, tt.msg)
			}
			if got := a.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
}
