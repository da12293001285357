package insights_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// views are the users and clients the insights views are read with:
// alice holds the reader and viewer roles in team-a, victor the view and
// viewer roles there, mallory nothing.
type views struct {
	admin                  client.Client
	adminCfg               *rest.Config
	alice, victor, mallory *rest.Config
	aliceKubeconfig        string
	now                    time.Time
}

// list reads resource in ns ("" for all namespaces) into out.
func (v *views) list(ctx context.Context, cfg *rest.Config, ns, resource, selector string, out any) error {
	path := "/apis/insights.privateapps.dev/v1alpha1/" + resource
	if ns != "" {
		path = "/apis/insights.privateapps.dev/v1alpha1/namespaces/" + ns + "/" + resource
	}
	raw, err := get(ctx, cfg, path, selector, "")
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (v *views) day(daysAgo int) string {
	return v.now.AddDate(0, 0, -daysAgo).Format(time.DateOnly)
}

func (v *views) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", v.aliceKubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// str is *p, or "" for an absent field.
func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func counts(r insightsv1alpha1.RecordInsight) string {
	cell := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	return strings.Join([]string{cell(r.Created), cell(r.Updated), cell(r.Deleted), cell(r.Merged)}, "/")
}

// recordInsights: successful record calls counted per UTC day, record type
// and action, zeros for days without calls, per app or for the namespace.
func recordInsights(ctx context.Context, t *testing.T, v *views, store calllog.Store) {
	must(t, v.admin.Create(ctx, &v1alpha1.APICatalog{
		ObjectMeta: metav1.ObjectMeta{Name: "crm"},
		Spec: v1alpha1.APICatalogSpec{
			Scopes: []v1alpha1.CatalogScope{{Name: "crm.objects.contacts.write"}, {Name: "tickets.write"}},
			Routes: []v1alpha1.CatalogRoute{
				{Name: "contacts-create", Methods: []v1alpha1.HTTPMethod{"POST"}, Path: "/crm/v3/objects/contacts", Scopes: []string{"crm.objects.contacts.write"},
					Record: &v1alpha1.RouteRecord{Type: "contacts", Action: v1alpha1.RecordCreated}},
				{Name: "tickets-create", Methods: []v1alpha1.HTTPMethod{"POST"}, Path: "/tickets", Scopes: []string{"tickets.write"},
					Record: &v1alpha1.RouteRecord{Type: "tickets", Action: v1alpha1.RecordCreated}},
			},
		},
	}))
	at := v.now.Add(-time.Minute)
	rec := func(id, ns, app, typ, action string, code int, when time.Time) calllog.Entry {
		return calllog.Entry{ID: id, Time: when, Namespace: ns, App: app, Method: "POST", Path: "/x", Code: code, DecidedBy: calllog.DecidedByUpstream,
			Source: calllog.SourceGateway, Final: true, RecordType: typ, RecordAction: action}
	}
	entries := []calllog.Entry{
		rec("r1", "team-a", "billing-sync", "contacts", "Created", 201, at),
		rec("r2", "team-a", "billing-sync", "contacts", "Updated", 200, at),
		rec("r3", "team-a", "billing-sync", "contacts", "Deleted", 404, at), // failed: not counted
		rec("r4", "team-a", "crm-reporting", "contacts", "Created", 200, at),
		rec("r5", "team-a", "billing-sync", "deals", "Merged", 200, at.AddDate(0, 0, -1)),
		rec("r6", "team-a", "deployer", "configmaps", "Deleted", 200, at.AddDate(0, 0, -3)),
		rec("r7", "team-b", "warehouse-sync", "products", "Created", 201, at),
	}
	for i := range entries {
		entries[i].Normalize()
	}
	must(t, store.Write(ctx, entries))

	var l insightsv1alpha1.RecordInsightList
	row := func(l *insightsv1alpha1.RecordInsightList, day, typ string) *insightsv1alpha1.RecordInsight {
		for i := range l.Items {
			if l.Items[i].Day == day && l.Items[i].RecordType == typ {
				return &l.Items[i]
			}
		}
		t.Fatalf("no row for %s %s in %d rows", day, typ, len(l.Items))
		return nil
	}
	must(t, v.list(ctx, v.alice, "team-a", "recordinsights", "", &l))
	// 30 days of the four types: the catalog's two, and two seen in calls.
	if len(l.Items) != 30*4 || l.Items[0].Day != v.day(29) || l.Items[len(l.Items)-1].Day != v.day(0) {
		t.Fatalf("%d rows from %s to %s, want 120 from %s to %s", len(l.Items), l.Items[0].Day, l.Items[len(l.Items)-1].Day, v.day(29), v.day(0))
	}
	for _, tt := range []struct {
		day, typ, want string
	}{
		{v.day(0), "contacts", "2/1/0/0"},
		{v.day(1), "deals", "0/0/0/1"},
		{v.day(3), "configmaps", "0/0/1/0"},
		{v.day(0), "tickets", "0/0/0/0"},
		{v.day(17), "contacts", "0/0/0/0"},
	} {
		if r := row(&l, tt.day, tt.typ); counts(*r) != tt.want || r.App != nil || r.Namespace != "team-a" {
			t.Errorf("%s %s: %s (app %q), want created/updated/deleted/merged %s for the namespace", tt.day, tt.typ, counts(*r), str(r.App), tt.want)
		}
	}
	for _, tt := range []struct {
		selector, day, typ, want string
		rows                     int
	}{
		// The catalog's types, and those the app's calls touched.
		{"app=billing-sync", v.day(0), "contacts", "1/1/0/0", 90},
		{"app=crm-reporting", v.day(0), "contacts", "1/0/0/0", 60},
		// Only the types some route creates, or that were created.
		{"action=created", v.day(0), "contacts", "2/-/-/-", 60},
		{"app=billing-sync,action=Merged", v.day(1), "deals", "-/-/-/1", 30},
	} {
		l = insightsv1alpha1.RecordInsightList{}
		must(t, v.list(ctx, v.alice, "team-a", "recordinsights", tt.selector, &l))
		if r := row(&l, tt.day, tt.typ); counts(*r) != tt.want || len(l.Items) != tt.rows {
			t.Errorf("--field-selector %s: %s %s %s in %d rows, want %s in %d", tt.selector, tt.day, tt.typ, counts(*r), len(l.Items), tt.want, tt.rows)
		}
	}
	l = insightsv1alpha1.RecordInsightList{}
	must(t, v.list(ctx, v.alice, "team-a", "recordinsights", "recordType=deals,since=2d,until=1d", &l))
	if len(l.Items) != 2 || counts(l.Items[1]) != "0/0/0/1" || l.Items[0].Day != v.day(2) {
		t.Errorf("deals of two days: %+v", l.Items)
	}
	for selector, msg := range map[string]string{
		"action=Exploded":     "not one of Created, Updated, Deleted, Merged",
		"since=60d,until=45d": "no day from",
		"code=200":            "use action, app, recordType, since, until",
	} {
		if err := v.list(ctx, v.alice, "team-a", "recordinsights", selector, &l); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("--field-selector %s: %v, want an error saying %q", selector, err, msg)
		}
	}
	// Across namespaces: the admin sees both; alice, bound in team-a only,
	// is refused (by the kube-apiserver, before the request reaches the
	// aggregated server), as mallory is in team-a.
	l = insightsv1alpha1.RecordInsightList{}
	must(t, v.list(ctx, v.adminCfg, "", "recordinsights", "since=0d", &l))
	var namespaces []string
	teamB := &insightsv1alpha1.RecordInsightList{}
	for _, r := range l.Items {
		if !slices.Contains(namespaces, r.Namespace) {
			namespaces = append(namespaces, r.Namespace)
		}
		if r.Namespace == "team-b" {
			teamB.Items = append(teamB.Items, r)
		}
	}
	if !slices.Equal(namespaces, []string{"team-a", "team-b"}) || counts(*row(teamB, v.day(0), "products")) != "1/0/0/0" {
		t.Errorf("the admin lists record insights of namespaces %v, want team-a and team-b with team-b's product", namespaces)
	}
	// An answer is bounded (200 rows in this server): a month of every
	// namespace's five types is 300, refused with what narrows it.
	if err := v.list(ctx, v.adminCfg, "", "recordinsights", "since=29d", &l); err == nil ||
		!strings.Contains(err.Error(), "would hold 300 rows (2 namespaces × 30 days × 5 record types)") || !strings.Contains(err.Error(), "narrow it") {
		t.Errorf("a month of every namespace past the bound: %v", err)
	}
	for _, c := range []struct {
		name, ns string
		cfg      *rest.Config
	}{{"alice", "", v.alice}, {"mallory", "team-a", v.mallory}} {
		if err := v.list(ctx, c.cfg, c.ns, "recordinsights", "", &l); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("%s lists record insights of %q: %v", c.name, c.ns, err)
		}
	}
	out := v.kubectl(t, "get", "recordinsights", "-n", "team-a", "--field-selector", "since=0d")
	for _, want := range []string{"DAY", "APP", "RECORD TYPE", "CREATED", "UPDATED", "DELETED", "MERGED", "(all apps)"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get recordinsights lacks %q:\n%s", want, out)
		}
	}
}

func setStatus(ctx context.Context, t *testing.T, c client.Client, app *v1alpha1.PrivateApp, change func(*v1alpha1.PrivateAppStatus)) {
	t.Helper()
	change(&app.Status)
	must(t, c.Status().Update(ctx, app))
}

func newApp(ctx context.Context, t *testing.T, c client.Client, ns, name string) *v1alpha1.PrivateApp {
	t.Helper()
	app := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.PrivateAppSpec{DisplayName: name, Scopes: []string{"crm.objects.contacts.write"}}}
	must(t, c.Create(ctx, app))
	return app
}

// apiUsage: the apps' status.usage per day, summed for the namespace.
func apiUsage(ctx context.Context, t *testing.T, v *views) {
	a := newApp(ctx, t, v.admin, "team-a", "usage-a")
	b := newApp(ctx, t, v.admin, "team-a", "usage-b")
	setStatus(ctx, t, v.admin, a, func(s *v1alpha1.PrivateAppStatus) {
		s.Usage = &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: v.day(1), Calls: 50}, {Date: v.day(0), Calls: 100, Refused: 5}}}
	})
	setStatus(ctx, t, v.admin, b, func(s *v1alpha1.PrivateAppStatus) {
		s.Usage = &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: v.day(0), Calls: 300}}}
	})
	var l insightsv1alpha1.APIUsageList
	must(t, v.list(ctx, v.victor, "team-a", "apiusages", "", &l))
	if len(l.Items) != 30 {
		t.Fatalf("%d days of usage, want 30", len(l.Items))
	}
	got := func(i int) string {
		u := l.Items[i]
		limit := int64(-1)
		if u.DailyLimit != nil {
			limit = *u.DailyLimit
		}
		return fmt.Sprintf("%s %s %d/%d of %d", u.Day, str(u.App), *u.Calls, *u.Refused, limit)
	}
	if g := got(29); g != v.day(0)+"  400/5 of 1000" {
		t.Errorf("today for the namespace: %s", g)
	}
	if g := got(28); g != v.day(1)+"  50/0 of 1000" {
		t.Errorf("yesterday for the namespace: %s", g)
	}
	if g := got(3); g != v.day(26)+"  0/0 of 1000" {
		t.Errorf("a day without calls: %s", g)
	}
	l = insightsv1alpha1.APIUsageList{}
	must(t, v.list(ctx, v.victor, "team-a", "apiusages", "app=usage-b,since=1d", &l))
	if len(l.Items) != 2 || got(1) != v.day(0)+" usage-b 300/0 of 1000" || got(0) != v.day(1)+" usage-b 0/0 of 1000" {
		t.Errorf("usage-b over two days: %+v", l.Items)
	}
	if err := v.list(ctx, v.victor, "team-a", "apiusages", "app=nothing-here", &l); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("usage of an app that does not exist: %v", err)
	}
	out := v.kubectl(t, "get", "apiusage", "-n", "team-a", "--field-selector", "since=0d")
	for _, want := range []string{"CALLS", "REFUSED", "DAILY LIMIT", "USED", "400", "40.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get apiusage lacks %q:\n%s", want, out)
		}
	}
	must(t, v.admin.Delete(ctx, a))
	must(t, v.admin.Delete(ctx, b))
}

// needsAttention: every case appears with why and what to do, and goes
// when its cause is fixed.
func needsAttention(ctx context.Context, t *testing.T, v *views) {
	now := metav1.NewTime(v.now)
	in := func(d time.Duration) *metav1.Time { x := metav1.NewTime(v.now.Add(d)); return &x }
	ready := func(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, LastTransitionTime: now}}
	}
	apps := map[string]*v1alpha1.PrivateApp{}
	for _, name := range []string{"expired", "broken", "paused", "waiting", "wide", "expiring", "rotating", "busy", "fine"} {
		apps[name] = newApp(ctx, t, v.admin, "team-a", name)
	}
	apps["paused"].Spec.Suspend = true
	must(t, v.admin.Update(ctx, apps["paused"]))
	issued := v1alpha1.TokenStatus{Digest: "sha256:" + strings.Repeat("a", 64), IssuedAt: now}
	cases := map[string]func(*v1alpha1.PrivateAppStatus){
		"expired": func(s *v1alpha1.PrivateAppStatus) {
			s.Connection, s.Conditions = v1alpha1.ConnectionExpired, ready(metav1.ConditionFalse, v1alpha1.ReasonTokenExpired, "expired")
		},
		"broken": func(s *v1alpha1.PrivateAppStatus) {
			s.Connection, s.Conditions = v1alpha1.ConnectionError, ready(metav1.ConditionFalse, v1alpha1.ReasonSecretConflict, "Secret broken-token belongs to something else")
		},
		"waiting": func(s *v1alpha1.PrivateAppStatus) {
			s.Connection, s.Conditions = v1alpha1.ConnectionPending, ready(metav1.ConditionFalse, v1alpha1.ReasonAppLimitExceeded, "over the cap")
		},
		"wide": func(s *v1alpha1.PrivateAppStatus) {
			s.Connection, s.Conditions = v1alpha1.ConnectionConnected, append(ready(metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, ""), metav1.Condition{
				Type: v1alpha1.ConditionScopesOffered, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonScopesNotOffered, Message: "no APICatalog offers tickets.write", LastTransitionTime: now})
		},
		"expiring": func(s *v1alpha1.PrivateAppStatus) {
			tok := issued
			tok.ExpiresAt = in(72 * time.Hour)
			s.Connection, s.Token = v1alpha1.ConnectionConnected, &tok
		},
		"rotating": func(s *v1alpha1.PrivateAppStatus) {
			tok := issued
			tok.Previous = &v1alpha1.PreviousTokenStatus{Digest: "sha256:" + strings.Repeat("b", 64), ExpiresAt: *in(48 * time.Hour), Reason: v1alpha1.PreviousReasonDelayedRotation, Rotation: "rot-1"}
			s.Connection, s.Token = v1alpha1.ConnectionConnected, &tok
		},
		"busy": func(s *v1alpha1.PrivateAppStatus) {
			s.Connection, s.Usage = v1alpha1.ConnectionConnected, &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: v.day(0), Calls: 850, Refused: 12}}}
		},
		"fine": func(s *v1alpha1.PrivateAppStatus) {
			tok := issued
			tok.ExpiresAt = in(60 * 24 * time.Hour)
			s.Connection, s.Token, s.Usage = v1alpha1.ConnectionConnected, &tok, &v1alpha1.UsageStatus{DailyLimit: 1000, Daily: []v1alpha1.DailyUsage{{Date: v.day(1), Calls: 990, Refused: 3}}}
		},
	}
	for name, set := range cases {
		setStatus(ctx, t, v.admin, apps[name], set)
	}
	reasons := func(cfg *rest.Config, ns, selector string) []string {
		t.Helper()
		var l insightsv1alpha1.NeedsAttentionList
		must(t, v.list(ctx, cfg, ns, "needsattention", selector, &l))
		var out []string
		for _, r := range l.Items {
			if r.Message == "" || r.Action == "" {
				t.Errorf("a row without why or what to do: %+v", r)
			}
			out = append(out, str(r.App)+":"+r.Reason)
		}
		return out
	}
	want := []string{"expired:Expired", "broken:Error", "paused:Disconnected", ":AccountNearDailyLimit", "rotating:GracePeriodEnding",
		"expiring:TokenExpiring", "busy:RateLimited", "waiting:WaitingForSlot", "wide:ScopesNotOffered"}
	if got := reasons(v.victor, "team-a", ""); !slices.Equal(got, want) {
		t.Fatalf("needs attention:\n%v\nwant, most urgent first,\n%v", got, want)
	}
	if got := reasons(v.victor, "team-a", "within=1d"); slices.Contains(got, "expiring:TokenExpiring") || slices.Contains(got, "rotating:GracePeriodEnding") {
		t.Errorf("within=1d lists ends 2 and 3 days away: %v", got)
	}
	if got := reasons(v.victor, "team-a", "app=busy"); !slices.Equal(got, []string{":AccountNearDailyLimit", "busy:RateLimited"}) {
		t.Errorf("app=busy: %v (the account's row stays: it is the app's too)", got)
	}
	if got := reasons(v.adminCfg, "", "reason=Expired"); !slices.Equal(got, []string{"expired:Expired"}) {
		t.Errorf("across namespaces, reason=Expired: %v", got)
	}
	var none insightsv1alpha1.NeedsAttentionList
	if err := v.list(ctx, v.mallory, "team-a", "needsattention", "", &none); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("mallory, bound nowhere, lists team-a's: %v", err)
	}
	out := v.kubectl(t, "get", "needsattention", "-n", "team-a")
	for _, w := range []string{"APP", "REASON", "WHEN", "MESSAGE", "ACTION", "(account)", "in 2d", "kubectl patch privateapp paused -n team-a --type merge -p '{\"spec\":{\"suspend\":false}}'",
		"kubectl patch tokenrotation rot-1 -n team-a"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl get needsattention lacks %q:\n%s", w, out)
		}
	}

	// Fix each cause: the list empties.
	apps["paused"].Spec.Suspend = false
	must(t, v.admin.Update(ctx, apps["paused"]))
	fixed := func(s *v1alpha1.PrivateAppStatus) {
		tok := issued
		s.Connection, s.Conditions, s.Token, s.Usage = v1alpha1.ConnectionConnected, ready(metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, ""), &tok, nil
	}
	for name := range cases {
		must(t, v.admin.Get(ctx, client.ObjectKeyFromObject(apps[name]), apps[name]))
		setStatus(ctx, t, v.admin, apps[name], fixed)
		if c := meta.FindStatusCondition(apps[name].Status.Conditions, v1alpha1.ConditionScopesOffered); c != nil {
			t.Fatalf("%s still has %+v", name, c)
		}
	}
	if got := reasons(v.victor, "team-a", ""); len(got) != 0 {
		t.Errorf("after fixing every cause, still %v", got)
	}
}
