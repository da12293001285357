package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
)

// listApps lists the apps of the namespace, or of all with -A.
func (e *env) listApps(ctx context.Context) ([]v1alpha1.PrivateApp, error) {
	var apps v1alpha1.PrivateAppList
	if err := e.c.List(ctx, &apps, client.InNamespace(e.listNamespace())); err != nil {
		if e.allNamespaces {
			return nil, fmt.Errorf("%w (listing every namespace needs a cluster-wide binding; use -n NAMESPACE)", explain(err))
		}
		return nil, explain(err)
	}
	return apps.Items, nil
}

// homeView is what home prints, and its JSON.
type homeView struct {
	NeedsAttention []insightsv1alpha1.NeedsAttention `json:"needsAttention"`
	Apps           []appRow                          `json:"apps"`
}

type appRow struct {
	Namespace    string     `json:"namespace"`
	Name         string     `json:"name"`
	Status       string     `json:"status"`
	InstalledAt  *time.Time `json:"installedAt,omitempty"`
	InstalledBy  string     `json:"installedBy,omitempty"`
	LastActivity *time.Time `json:"lastActivity,omitempty"`
	CallsToday   int64      `json:"callsToday"`
	RefusedToday int64      `json:"refusedToday"`
	LimitPer10s  int64      `json:"limitPer10s,omitempty"`
	DailyLimit   int64      `json:"dailyLimit,omitempty"`
}

func (e *env) home(ctx context.Context) error {
	apps, err := e.listApps(ctx)
	if err != nil {
		return err
	}
	now := e.now()
	v := homeView{NeedsAttention: insights.NeedsAttention(apps, now, insights.DefaultAttentionWithin), Apps: []appRow{}}
	for i := range apps {
		a := &apps[i]
		r := appRow{Namespace: a.Namespace, Name: a.Name, Status: orDash(string(a.Status.Connection)), InstalledBy: a.Status.InstalledBy}
		if a.Status.InstalledAt != nil {
			r.InstalledAt = &a.Status.InstalledAt.Time
		}
		if a.Status.LastActivityTime != nil {
			r.LastActivity = &a.Status.LastActivityTime.Time
		}
		used := a.UsageOn(now)
		r.CallsToday, r.RefusedToday = used.Calls, used.Refused
		if u := a.Status.Usage; u != nil {
			r.LimitPer10s, r.DailyLimit = u.LimitPer10s, u.DailyLimit
		}
		v.Apps = append(v.Apps, r)
	}
	if done, err := e.emit(v); done {
		return err
	}
	where := "namespace " + e.namespace
	if e.allNamespaces {
		where = "all namespaces"
	}
	if len(apps) == 0 {
		fmt.Fprintf(e.out, "No private apps in %s. Create one: kubectl apply -f config/samples/privateapps_v1alpha1_privateapp.yaml\n", where)
		return nil
	}
	if len(v.NeedsAttention) == 0 {
		fmt.Fprintf(e.out, "Nothing needs attention in %s.\n\n", where)
	} else {
		fmt.Fprintf(e.out, "NEEDS ATTENTION (%d)\n", len(v.NeedsAttention))
		for _, n := range v.NeedsAttention {
			app := n.Namespace + "/" + value(n.App)
			if n.App == nil {
				app = n.Namespace + " (account)"
			}
			fmt.Fprintf(e.out, "  %s  %s: %s\n    → %s\n", app, n.Reason, n.Message, n.Action)
		}
		fmt.Fprintln(e.out)
	}
	headers := []string{"NAME", "STATUS", "INSTALLED", "INSTALLED BY", "LAST ACTIVITY", "CALLS TODAY", "REFUSED", "LIMIT/10S", "DAILY LIMIT"}
	if e.allNamespaces {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	var rows [][]string
	for _, r := range v.Apps {
		installed, last := "-", "-"
		if r.InstalledAt != nil {
			installed = r.InstalledAt.UTC().Format(time.DateOnly)
		}
		if r.LastActivity != nil {
			last = ago(*r.LastActivity, now)
		}
		row := []string{r.Name, r.Status, installed, orDash(r.InstalledBy), last, fmt.Sprint(r.CallsToday), fmt.Sprint(r.RefusedToday),
			limit(r.LimitPer10s), limit(r.DailyLimit)}
		if e.allNamespaces {
			row = append([]string{r.Namespace}, row...)
		}
		rows = append(rows, row)
	}
	table(e.out, headers, rows)
	return nil
}

func limit(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func value(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (e *env) describeCommand() *cobra.Command {
	return &cobra.Command{
		Use: "describe APP", Short: "An app's overview: status, alerts, token, scopes, usage with a 30-day chart, activity, record insights, latest calls",
		Args: oneApp, ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error { return e.describe(cmd.Context(), args[0]) },
	}
}

func (e *env) describe(ctx context.Context, name string) error {
	app, err := e.getApp(ctx, name)
	if err != nil {
		return err
	}
	now := e.now()
	if done, err := e.emit(app); done {
		return err
	}
	w := e.out
	fmt.Fprintf(w, "%s (%s)  namespace %s\n", app.Name, orDash(app.Spec.DisplayName), app.Namespace)
	if app.Spec.Description != "" {
		fmt.Fprintf(w, "  %s\n", app.Spec.Description)
	}
	status := orDash(string(app.Status.Connection))
	if r := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionReady); r != nil {
		status += fmt.Sprintf(" (Ready %s: %s)", r.Status, r.Reason)
	}
	fmt.Fprintf(w, "\nStatus:        %s\n", status)
	installed := "-"
	if app.Status.InstalledAt != nil {
		installed = when(app.Status.InstalledAt.Time, now)
	}
	fmt.Fprintf(w, "Installed:     %s by %s\n", installed, orDash(app.Status.InstalledBy))
	if st := app.Status; st.AppID != 0 {
		fmt.Fprintf(w, "HubSpot ids:   appId %d, hubId %d, userId %s\n", st.AppID, st.HubID, orDash(idText(st.InstalledByUserID)))
	}
	last := "-"
	if app.Status.LastActivityTime != nil {
		last = when(app.Status.LastActivityTime.Time, now)
	}
	fmt.Fprintf(w, "Last activity: %s\n", last)

	alerts := insights.NeedsAttention([]v1alpha1.PrivateApp{*app}, now, insights.DefaultAttentionWithin)
	fmt.Fprintln(w, "\nAlerts:")
	if len(alerts) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, a := range alerts {
		fmt.Fprintf(w, "  %s: %s\n    → %s\n", a.Reason, a.Message, a.Action)
	}

	fmt.Fprintln(w, "\nToken:")
	if t := app.Status.Token; t == nil {
		fmt.Fprintln(w, "  none issued yet")
	} else {
		fmt.Fprintf(w, "  digest:    %s…  (the token itself: kubectl privateapp token %s)\n", digestPrefix(t.Digest), app.Name)
		fmt.Fprintf(w, "  issued:    %s\n", when(t.IssuedAt.Time, now))
		expiry := "never (no spec.tokenLifetime)"
		if t.ExpiresAt != nil {
			expiry = when(t.ExpiresAt.Time, now)
		}
		fmt.Fprintf(w, "  expires:   %s\n", expiry)
		if p := t.Previous; p != nil {
			fmt.Fprintf(w, "  previous:  %s… valid until %s (%s", digestPrefix(p.Digest), when(p.ExpiresAt.Time, now), orDash(p.Reason))
			if p.Rotation != "" {
				fmt.Fprintf(w, ", TokenRotation %s", p.Rotation)
			}
			fmt.Fprintln(w, ")")
		}
	}
	fmt.Fprintf(w, "\nScopes:        %s\n", strings.Join(app.Spec.Scopes, ", "))

	used := app.UsageOn(now)
	calls, refused := used.Calls, used.Refused
	fmt.Fprintf(w, "\nUsage today:   %d calls, %d refused", calls, refused)
	if u := app.Status.Usage; u != nil && u.LimitPer10s > 0 {
		fmt.Fprintf(w, "; limits: %d per 10 s (app), %d per day (account)", u.LimitPer10s, u.DailyLimit)
	}
	fmt.Fprintln(w)
	values, labels := dailySeries(app, now)
	var dailyLimit int64
	if app.Status.Usage != nil {
		dailyLimit = app.Status.Usage.DailyLimit
	}
	fmt.Fprintln(w, "Calls per day, last 30 days (UTC):")
	chart(w, values, labels, 6, dailyLimit)

	fmt.Fprintln(w, "\nActivity:")
	if len(app.Status.Activity) == 0 {
		fmt.Fprintln(w, "  none")
	}
	acts := slices.Clone(app.Status.Activity)
	slices.SortFunc(acts, func(a, b v1alpha1.ActivityEntry) int { return b.Time.Compare(a.Time.Time) })
	for _, a := range acts {
		fmt.Fprintf(w, "  %s  %-17s %-20s %s\n", a.Time.UTC().Format("2006-01-02 15:04"), a.Type, orDash(a.User), a.Message)
	}

	fmt.Fprintln(w, "\nRecord insights, last 7 days:")
	var ri insightsv1alpha1.RecordInsightList
	if err := e.c.List(ctx, &ri, client.InNamespace(app.Namespace), client.MatchingFields{"app": app.Name, "since": "6d"}); err != nil {
		fmt.Fprintf(w, "  not available: %v\n", explain(err))
	} else {
		rows := recordRows(ri.Items, false)
		if len(rows) == 0 {
			fmt.Fprintln(w, "  no records created, updated, deleted or merged")
		} else {
			indented(w, []string{"DAY", "RECORD TYPE", "CREATED", "UPDATED", "DELETED", "MERGED"}, rows)
		}
	}

	fmt.Fprintln(w, "\nLatest calls:")
	var cl insightsv1alpha1.CallList
	if err := e.c.List(ctx, &cl, client.InNamespace(app.Namespace), client.MatchingFields{"app": app.Name, "since": "30d"}, client.Limit(10)); err != nil {
		fmt.Fprintf(w, "  not available: %v\n", explain(err))
	} else if len(cl.Items) == 0 {
		fmt.Fprintln(w, "  none in the last 30 days")
	} else {
		indented(w, callHeaders, callRows(cl.Items))
		fmt.Fprintf(w, "  more: kubectl privateapp logs %s -n %s\n", app.Name, app.Namespace)
	}
	return nil
}

// dailySeries is the app's calls for each of the last 30 UTC days, oldest
// first, with the days' labels (MM-DD).
func dailySeries(app *v1alpha1.PrivateApp, now time.Time) ([]int64, []string) {
	dates, values := app.CallsByDay(now, 30)
	labels := make([]string, len(dates))
	for i, d := range dates {
		labels[i] = d[len("2006-"):]
	}
	return values, labels
}

func digestPrefix(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return "sha256:" + d
}

// indented writes a table with each line indented by two spaces.
func indented(w io.Writer, headers []string, rows [][]string) {
	var b bytes.Buffer
	table(&b, headers, rows)
	for line := range strings.Lines(b.String()) {
		fmt.Fprint(w, "  "+line)
	}
}

func (e *env) tokenCommand() *cobra.Command {
	return &cobra.Command{
		Use: "token APP", Short: "Print the app's token from its Secret (the only command that shows it)",
		Long: `Print the app's current token, from its Secret, and nothing else, so that
TOKEN=$(kubectl privateapp token APP) works. Needs get on the Secret.`,
		Args: oneApp, ValidArgsFunction: e.appNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			app, err := e.getApp(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var s corev1.Secret
			if err := e.c.Get(cmd.Context(), client.ObjectKey{Namespace: app.Namespace, Name: app.TokenSecretName()}, &s); err != nil {
				return fmt.Errorf("reading Secret %s/%s: %w", app.Namespace, app.TokenSecretName(), explain(err))
			}
			if !app.HoldsTokenOf(&s) {
				return fmt.Errorf("the Secret %s/%s is not a token Secret the operator wrote for %s (its type or owner differ); kubectl describe privateapp %s -n %s says what happened",
					app.Namespace, app.TokenSecretName(), app.Name, app.Name, app.Namespace)
			}
			tok := s.Data[v1alpha1.SecretTokenKey]
			if len(tok) == 0 {
				return fmt.Errorf("the Secret %s/%s has no token yet; the app is %s", app.Namespace, app.TokenSecretName(), orDash(string(app.Status.Connection)))
			}
			_, err = fmt.Fprintln(e.out, string(tok))
			return err
		},
	}
}

// activityRow is one lifecycle event of an app.
type activityRow struct {
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Type    string    `json:"type"`
	User    string    `json:"user,omitempty"`
	Message string    `json:"message,omitempty"`
}

func (e *env) activityCommand() *cobra.Command {
	var typ, user, app string
	cmd := &cobra.Command{
		Use: "activity", Short: "The apps' activity log (installed, disconnected, rotated, ...), newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := e.listApps(cmd.Context())
			if err != nil {
				return err
			}
			var rows []activityRow
			for _, a := range apps {
				if app != "" && a.Name != app {
					continue
				}
				for _, act := range a.Status.Activity {
					if typ != "" && !strings.EqualFold(string(act.Type), typ) || user != "" && act.User != user {
						continue
					}
					name := a.Name
					if e.allNamespaces {
						name = a.Namespace + "/" + a.Name
					}
					rows = append(rows, activityRow{Time: act.Time.UTC(), App: name, Type: string(act.Type), User: act.User, Message: act.Message})
				}
			}
			slices.SortStableFunc(rows, func(a, b activityRow) int { return b.Time.Compare(a.Time) })
			if rows == nil {
				rows = []activityRow{}
			}
			if done, err := e.emit(rows); done {
				return err
			}
			var out [][]string
			for _, r := range rows {
				out = append(out, []string{r.Time.Format("2006-01-02 15:04:05"), r.App, r.Type, orDash(r.User), r.Message})
			}
			table(e.out, []string{"TIME (UTC)", "APP", "TYPE", "USER", "MESSAGE"}, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "Only this type: Installed, Disconnected, Reconnected, ScopesChanged, TokenRotated, OldTokenExpired, RotationCancelled, TokenExpired, SecretRepaired.")
	cmd.Flags().StringVar(&user, "user", "", "Only what this user did.")
	cmd.Flags().StringVar(&app, "app", "", "Only this app.")
	return cmd
}

// idText is a HubSpot id as text; empty when it has none yet.
func idText(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}
