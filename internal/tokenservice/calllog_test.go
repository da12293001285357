package tokenservice

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// recordedCalls keeps what the token service hands to the call log.
type recordedCalls struct {
	mu      sync.Mutex
	entries []calllog.Entry
}

func (r *recordedCalls) Add(e calllog.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

// all returns what was logged and not taken.
func (r *recordedCalls) all() []calllog.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// take returns and forgets what was logged.
func (r *recordedCalls) take() []calllog.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.entries
	r.entries = nil
	return out
}

func TestChecksAreLogged(t *testing.T) {
	f := newFixture(t)
	f.catalogs.use(t, crmCatalog)
	tok := f.current.Reveal()
	nginx := func(method, url, requestID string) map[string]string {
		h := map[string]string{"X-Original-Method": method, "X-Original-URL": url}
		if requestID != "" {
			h["X-Request-Id"] = requestID
		}
		return h
	}

	// Allowed: not final, the gateway's report is to come under the same id.
	a := f.checkAs(t, "GET", PathCheck, tok, nginx("GET", "https://api.example.com/crm/v3/objects/contacts/1?properties=email", "0f9e8d7c6b5a"))
	if a.code != 200 {
		t.Fatalf("check: %d %s", a.code, a.body)
	}
	got := f.calls.take()
	want := calllog.Entry{ID: "0f9e8d7c6b5a", Time: t0, Namespace: "team-a", App: "crm", Method: "GET", Host: "api.example.com",
		Path: "/crm/v3/objects/contacts/1", Query: "properties=email", Route: "crm/contacts-get", Code: 200,
		DecidedBy: calllog.DecidedByTokenService, Reason: calllog.ReasonAllowed, Source: calllog.SourceGateway}
	if len(got) != 1 || got[0].Time.IsZero() {
		t.Fatalf("logged %+v, want one entry", got)
	}
	got[0].Time = t0
	if got[0] != want {
		t.Errorf("logged\n%+v\nwant\n%+v", got[0], want)
	}

	// A route that changes a record says so, for record insights.
	if a := f.checkAs(t, "PATCH", PathCheck, tok, nginx("PATCH", "https://api.example.com/crm/v3/objects/deals/9", "")); a.code != 200 {
		t.Fatalf("check: %d %s", a.code, a.body)
	}
	if got := f.calls.take(); len(got) != 1 || got[0].RecordType != "deals" || got[0].RecordAction != "Updated" || !got[0].CountsAsRecord() {
		t.Fatalf("an allowed deals update logged as %+v, want record deals Updated", got)
	}

	// Refused for a scope: final, and the error's correlationId finds it.
	a = f.checkAs(t, "GET", PathCheck+"/crm/v3/objects/deals/9", tok, nil)
	got = f.calls.take()
	if a.code != 403 || len(got) != 1 {
		t.Fatalf("refusal: %d, logged %+v", a.code, got)
	}
	e := got[0]
	if e.Code != 403 || !e.Final || e.Reason != "missing_scope" || e.Route != "crm/deals-get" || e.Path != "/crm/v3/objects/deals/9" || e.App != "crm" {
		t.Errorf("refusal logged as %+v", e)
	}
	if body := errorBody(t, a); body.CorrelationID != e.ID {
		t.Errorf("the error's correlationId %q is not the entry's id %q", body.CorrelationID, e.ID)
	}

	// A request id that is not plain text is replaced, not stored.
	f.checkAs(t, "GET", PathCheck, tok, nginx("GET", "/crm/v3/objects/contacts/2", "x\" onload=alert(1)"))
	if got = f.calls.take(); len(got) != 1 || strings.ContainsAny(got[0].ID, "\" =()") || got[0].ID == "" {
		t.Errorf("an odd request id was kept: %+v", got)
	}

	// An unknown token belongs to no app: nothing to log.
	other := mustNew(t)
	f.tokens = append(f.tokens, other.Reveal())
	f.checkAs(t, "GET", PathCheck, other.Reveal(), nginx("GET", "/crm/v3/objects/contacts/2", ""))
	if got = f.calls.take(); len(got) != 0 {
		t.Errorf("a call with an unknown token was logged: %+v", got)
	}
	// An expired one does: it names its app.
	f.clock.SetTime(t0.Add(2 * time.Hour))
	a = f.checkAs(t, "GET", PathCheck, f.prev.Reveal(), nginx("GET", "/crm/v3/objects/contacts/2", "rid-1"))
	if got = f.calls.take(); a.code != 401 || len(got) != 1 || got[0].Reason != "expired" || got[0].Code != 401 || !got[0].Final {
		t.Errorf("an expired token's call: %d, logged %+v", a.code, got)
	}
}

// TestReportingGateway: a check URL's gateway parameter names the gateway
// whose access log will report an allowed call, when the gateway named the
// call; otherwise no report is awaited.
func TestReportingGateway(t *testing.T) {
	f := newFixture(t)
	tok := f.current.Reveal()
	for _, c := range []struct {
		name, target, requestID, want string
	}{
		{"named by its check URL", PathCheck + "?scope=crm.objects.contacts.read&gateway=edge-1", "rid-1", "edge-1"},
		{"no gateway parameter", PathCheck + "?scope=crm.objects.contacts.read", "rid-2", ""},
		{"the gateway sent no request id: its report cannot meet the check", PathCheck + "?gateway=edge-1", "", ""},
		{"a name that is not plain text", PathCheck + "?gateway=%3Cb%3E", "rid-3", ""},
		{"a name over 63 characters", PathCheck + "?gateway=" + strings.Repeat("g", 64), "rid-4", ""},
		{"path-prefix mode: the query is the client's", PathCheck + "/crm/v3/objects/contacts/1?gateway=edge-1", "rid-5", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://api.example.com/crm/v3/objects/contacts/1"}
			if c.requestID != "" {
				h["X-Request-Id"] = c.requestID
			}
			if a := f.checkAs(t, "GET", c.target, tok, h); a.code != 200 {
				t.Fatalf("check: %d %s", a.code, a.body)
			}
			got := f.calls.take()
			if len(got) != 1 || got[0].Gateway != c.want || got[0].Reason != calllog.ReasonAllowed {
				t.Fatalf("logged %+v, want one allowed check awaiting gateway %q", got, c.want)
			}
		})
	}
	// A refusal is final: it awaits nothing.
	f.checkAs(t, "GET", PathCheck+"?scope=crm.scope.nobody.holds&gateway=edge-1", tok, map[string]string{"X-Request-Id": "rid-6"})
	if got := f.calls.take(); len(got) != 1 || got[0].Code != 403 || got[0].Gateway != "" {
		t.Errorf("a refusal logged as %+v, want a 403 that awaits no report", got)
	}
}

func TestTokenReviewsAreLogged(t *testing.T) {
	f := newFixture(t)
	review := func(tok string) {
		body, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}})
		if a := f.do(t, http.MethodPost, PathTokenReview, "", body); a.code != 200 {
			t.Fatalf("TokenReview: %d", a.code)
		}
	}
	review(f.current.Reveal())
	f.clock.SetTime(t0.Add(2 * time.Hour))
	review(f.prev.Reveal())
	got := f.calls.take()
	if len(got) != 2 {
		t.Fatalf("logged %+v, want two entries", got)
	}
	if e := got[0]; e.Method != calllog.MethodTokenReview || e.Code != 200 || e.Source != calllog.SourceKubernetes || e.App != "crm" || !e.Final {
		t.Errorf("an authentication logged as %+v", e)
	}
	if e := got[1]; e.Code != 401 || e.Reason != "expired" {
		t.Errorf("a refused authentication logged as %+v", e)
	}
	if got[0].ID == got[1].ID {
		t.Error("two authentications share an id")
	}
}

type discard struct{}

func (discard) Write(context.Context, []calllog.Entry) error { return nil }

// BenchmarkCheckWithCallLog is BenchmarkCheck with every decision handed to
// a call-log queue (whose writer discards): the hot path's share of the
// log's cost.
func BenchmarkCheckWithCallLog(b *testing.B) {
	f := newFixture(b)
	limits := DefaultLimits()
	limits.Editions["professional"] = EditionLimits{PerTenSeconds: 1 << 40, PerDay: 1 << 40}
	q := calllog.NewQueue(discard{}, calllog.QueueOptions{Size: 1 << 20}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = q.Start(ctx) }()
	s := &Service{Index: f.ix, Limiter: ratelimit.New(), Limits: limits, Usage: f.usage, Clock: f.clock,
		Accounts: labels{"team-a": {"professional", ""}}, Calls: q}
	benchmarkHandler(b, s.Handler(), PathCheck+"?scope=crm.objects.contacts.read", map[string]string{"Authorization": "Bearer " + f.current.Reveal(),
		"X-Original-URL": "https://api.example.com/crm/v3/objects/contacts/1?properties=email"})
}
