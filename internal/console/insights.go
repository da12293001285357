package console

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// insightsError says why the insights API gave nothing.
func insightsError(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return "Your user may not read the insights API here: " + err.Error()
	case apierrors.IsNotFound(err), strings.Contains(err.Error(), "no matches for kind"), strings.Contains(err.Error(), "the server could not find"):
		return "The insights API (insights.privateapps.dev) is not served in this cluster: install the operator's insights component."
	}
	return "The insights API did not answer: " + err.Error()
}

// callRow is one call of the call log.
type callRow struct {
	Time                                 time.Time
	App, Method, URL, DecidedBy, Latency string
	Code                                 int32
	Refused                              bool
}

func (c *Console) calls(ctx context.Context, ns string, fields client.MatchingFields, limit int64, cont string) ([]callRow, string, string) {
	var l insightsv1alpha1.CallList
	opts := []client.ListOption{client.InNamespace(ns), fields, client.Limit(limit)}
	if cont != "" {
		opts = append(opts, client.Continue(cont))
	}
	if err := c.c.List(ctx, &l, opts...); err != nil {
		return nil, "", insightsError(err)
	}
	var rows []callRow
	for _, x := range l.Items {
		latency := "-"
		if x.Latency != nil {
			latency = x.Latency.Duration.String()
		}
		rows = append(rows, callRow{Time: x.Time.Time, App: x.App, Method: x.Method, URL: x.RequestURL(), DecidedBy: x.Decision(), Latency: latency,
			Code: x.Code, Refused: x.Code >= 400})
	}
	return rows, l.Continue, ""
}

// logsView is the Logs tab: the filters as given, and a page of calls.
type logsView struct {
	App                                  *v1alpha1.PrivateApp
	Method, Response, Start, End, Search string
	Methods, Responses                   []string
	Calls                                []callRow
	Next, Error, FilterError             string
}

// responses are the Response drop-down's choices, as the insights API's
// code field takes them.
var responses = []string{"2xx", "3xx", "4xx", "5xx", "200", "401", "403", "404", "429", "500", "502", "503"}

func (c *Console) appLogs(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	v := logsView{App: app, Method: q.Get("method"), Response: q.Get("response"), Start: q.Get("start"), End: q.Get("end"),
		Search:  strings.TrimSpace(q.Get("url")),
		Methods: []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TOKENREVIEW", "INTROSPECT"}, Responses: responses}
	// Only values that passed their check reach the query and the kubectl
	// line: a link cannot put words of its choosing into the command a
	// reader copies.
	fields := client.MatchingFields{"app": app.Name, "since": "30d"}
	sinceArg, kubectlArgs := "30d", ""
	var problems []string
	if v.Method != "" {
		if slices.Contains(v.Methods, v.Method) {
			fields["method"] = v.Method
			kubectlArgs += " --method " + v.Method
		} else {
			problems = append(problems, "the method is not one of the list")
		}
	}
	if v.Response != "" {
		if slices.Contains(responses, v.Response) {
			fields["code"] = v.Response
			kubectlArgs += " --status " + v.Response
		} else {
			problems = append(problems, "the response is not one of the list")
		}
	}
	day := func(s, name string, add int) string {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("the %s date is not a date (YYYY-MM-DD)", name))
			return ""
		}
		return since(t.AddDate(0, 0, add))
	}
	if v.Start != "" {
		if s := day(v.Start, "start", 0); s != "" {
			fields["since"], sinceArg = s, s
		}
	}
	if v.End != "" {
		if s := day(v.End, "end", 1); s != "" {
			fields["until"] = s
			kubectlArgs += " --until " + s
		}
	}
	if v.Search != "" {
		if len(v.Search) > 256 || strings.ContainsFunc(v.Search, isControl) {
			problems = append(problems, "the URL search is longer than 256 characters or holds control characters")
		} else {
			fields["url"] = v.Search
			kubectlArgs += " --url '" + strings.ReplaceAll(v.Search, "'", `'\''`) + "'"
		}
	}
	kubectl := fmt.Sprintf("kubectl privateapp -n %s logs %s --since %s%s", app.Namespace, app.Name, sinceArg, kubectlArgs)
	code := http.StatusOK
	if len(problems) > 0 {
		v.FilterError = "Change the filters: " + strings.Join(problems, "; ") + "."
		code = http.StatusUnprocessableEntity
	} else {
		var next string
		v.Calls, next, v.Error = c.calls(r.Context(), app.Namespace, fields, 50, q.Get("continue"))
		if next != "" {
			nq := url.Values{}
			for k, vals := range q {
				if k != "continue" {
					nq[k] = vals
				}
			}
			nq.Set("continue", next)
			v.Next = "?" + nq.Encode()
		}
	}
	c.renderCode(w, code, "logs", page{Title: "Logs of " + displayName(app), Namespace: app.Namespace, Menu: "apps", Kubectl: kubectl, Data: v})
}

// recordRow is one day and record type of record insights.
type recordRow struct {
	Day, App, RecordType              string
	Created, Updated, Deleted, Merged int64
}

func (c *Console) records(ctx context.Context, ns, app string) ([]recordRow, string) {
	fields := client.MatchingFields{"since": "29d"}
	if app != "" {
		fields["app"] = app
	}
	var l insightsv1alpha1.RecordInsightList
	if err := c.c.List(ctx, &l, client.InNamespace(ns), fields); err != nil {
		return nil, insightsError(err)
	}
	var rows []recordRow
	for _, x := range l.Items {
		row := recordRow{Day: x.Day, RecordType: x.RecordType, Created: deref(x.Created), Updated: deref(x.Updated),
			Deleted: deref(x.Deleted), Merged: deref(x.Merged)}
		if x.App != nil {
			row.App = *x.App
		}
		if row.Created+row.Updated+row.Deleted+row.Merged > 0 {
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, func(a, b recordRow) int { return cmp.Compare(b.Day, a.Day) })
	return rows, ""
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// activityRow is one entry of the activity log, with its app.
type activityRow struct {
	App string
	v1alpha1.ActivityEntry
}

// insightsView is the connection insights page.
type insightsView struct {
	Type, User, App string
	Types, Users    []string
	Apps            []string
	Activity        []activityRow
	Usage           chart
	UsageRows       []usageRow
	UsageErr        string
	Records         []recordRow
	RecordsErr      string
	Trend           string
}

type usageRow struct {
	Day            string
	Calls, Refused int64
	Share          string
}

func (c *Console) connectionInsights(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	ctx, q := r.Context(), r.URL.Query()
	apps, err := c.listApps(ctx, ns)
	if err != nil {
		c.fail(w, r, ns, "list the private apps", err)
		return
	}
	v := insightsView{Type: q.Get("type"), User: q.Get("user"), App: q.Get("app")}
	for _, t := range []v1alpha1.ActivityType{v1alpha1.ActivityInstalled, v1alpha1.ActivityDisconnected, v1alpha1.ActivityReconnected,
		v1alpha1.ActivityScopesChanged, v1alpha1.ActivityTokenRotated, v1alpha1.ActivityOldTokenExpired, v1alpha1.ActivityRotationCancelled,
		v1alpha1.ActivityTokenExpired, v1alpha1.ActivitySecretRepaired} {
		v.Types = append(v.Types, string(t))
	}
	users := map[string]bool{}
	for _, a := range apps {
		v.Apps = append(v.Apps, a.Name)
		for _, act := range a.Status.Activity {
			if act.User != "" {
				users[act.User] = true
			}
			if v.Type != "" && string(act.Type) != v.Type || v.User != "" && act.User != v.User || v.App != "" && a.Name != v.App {
				continue
			}
			v.Activity = append(v.Activity, activityRow{App: a.Name, ActivityEntry: act})
		}
	}
	for u := range users {
		v.Users = append(v.Users, u)
	}
	slices.Sort(v.Users)
	slices.SortStableFunc(v.Activity, func(a, b activityRow) int { return b.Time.Compare(a.Time.Time) })

	var l insightsv1alpha1.APIUsageList
	if err := c.c.List(ctx, &l, client.InNamespace(ns), client.MatchingFields{"since": "29d"}); err != nil {
		v.UsageErr = insightsError(err)
	} else {
		var values []int64
		var labels []string
		var limit int64
		for _, u := range l.Items {
			calls := deref(u.Calls)
			row := usageRow{Day: u.Day, Calls: calls, Refused: deref(u.Refused), Share: "-"}
			if u.DailyLimit != nil && *u.DailyLimit > 0 {
				limit = *u.DailyLimit
				row.Share = fmt.Sprintf("%.1f%%", 100*float64(calls)/float64(limit))
			}
			values = append(values, calls)
			labels = append(labels, u.Day)
			v.UsageRows = append(v.UsageRows, row)
		}
		v.Usage = barChart("API calls per day, UTC, against the account's daily limit", values, labels, limit)
		v.Trend = trend(values)
		slices.Reverse(v.UsageRows)
	}
	v.Records, v.RecordsErr = c.records(ctx, ns, "")
	c.render(w, r, "insights", page{Title: "Connection insights", Namespace: ns, Menu: "insights",
		Kubectl: fmt.Sprintf("kubectl privateapp -n %s usage; kubectl privateapp -n %s activity; kubectl privateapp -n %s insights", ns, ns, ns), Data: v})
}

// trend compares the last 7 days with the 7 before them.
func trend(values []int64) string {
	if len(values) < 14 {
		return ""
	}
	var last, before int64
	for _, v := range values[len(values)-7:] {
		last += v
	}
	for _, v := range values[len(values)-14 : len(values)-7] {
		before += v
	}
	switch {
	case before == 0 && last == 0:
		return "No calls in the last two weeks."
	case before == 0:
		return fmt.Sprintf("%d calls in the last 7 days, none in the 7 before.", last)
	}
	change := 100 * float64(last-before) / float64(before)
	return fmt.Sprintf("%d calls in the last 7 days, %+.0f%% against the 7 before (%d).", last, change, before)
}

// chart is a bar chart drawn on the server: SVG with a title per bar and
// a table beside it, so it reads without colour and without the picture.
type chart struct {
	Title string
	SVG   template.HTML
}

// dailyChart is an app's calls per UTC day, the last 30 days.
func dailyChart(app *v1alpha1.PrivateApp, now time.Time, limit int64) chart {
	dates, calls := app.CallsByDay(now, 30)
	return barChart("Calls per day, last 30 days, UTC", calls, dates, limit)
}

// barChart draws values as bars; limit, when set, is a dashed line with
// its own label. Only numbers and dates reach the SVG text.
func barChart(title string, values []int64, labels []string, limit int64) chart {
	const width, height, left, bottom = 640, 180, 48, 24
	top := int64(1)
	for _, v := range values {
		top = max(top, v)
	}
	scale := top
	if limit > 0 && limit <= 2*top {
		scale = max(scale, limit)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, width, height, template.HTMLEscapeString(title))
	plot := float64(height - bottom - 10)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, height-bottom, width, height-bottom)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">%d</text>`, left-4, 14, scale)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">0</text>`, left-4, height-bottom)
	if n := len(values); n > 0 {
		slot := float64(width-left) / float64(n)
		for i, v := range values {
			h := plot * float64(v) / float64(scale)
			x := float64(left) + float64(i)*slot + 1
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d</title></rect>`,
				x, float64(height-bottom)-h, slot-2, h, template.HTMLEscapeString(labels[i]), v)
			if i%7 == 0 && i < n-3 || i == n-1 {
				fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d">%s</text>`, x, height-6, template.HTMLEscapeString(shortDay(labels[i])))
			}
		}
	}
	if limit > 0 && limit <= scale {
		y := float64(height-bottom) - plot*float64(limit)/float64(scale)
		fmt.Fprintf(&b, `<line class="limit" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/><text class="tick" x="%d" y="%.1f">daily limit %d</text>`,
			left, y, width, y, left+4, y-3, limit)
	}
	if limit > scale {
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%d" text-anchor="end">daily limit %d, above the chart</text>`, width-4, 14, limit)
	}
	b.WriteString(`</svg>`)
	return chart{Title: title, SVG: template.HTML(b.String())} //nolint:gosec // numbers and escaped dates only
}

func shortDay(d string) string {
	if len(d) == len("2006-01-02") {
		return d[5:]
	}
	return d
}
