package console

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/insights"
)

const group = "privateapps.dev"

// notices are the lines a redirect may ask a page to show, by key: a link
// cannot make the console say anything else.
var notices = map[string]string{
	"created":      "The app was created. The operator issues its token into the app's Secret; Show token reveals it once it is there.",
	"saved":        "Saved. The token did not change.",
	"rotated":      "A new token is issued: every earlier token of the app stopped working.",
	"rotating":     "A new token is issued. The old token keeps working until the grace period ends; expire it now or cancel the rotation below.",
	"expired":      "The old token no longer works.",
	"cancelled":    "The rotation is cancelled: the old token is the current one again and the new one no longer works.",
	"suspended":    "The app is disconnected: its tokens are refused until it is reconnected.",
	"reconnected":  "The app is reconnected: its tokens work again (the same tokens).",
	"deleted":      "The app was deleted, and its tokens with it.",
	"noted":        "The notification was created. The operator tells its recipients from the next event on.",
	"saved-note":   "The notification was saved.",
	"deleted-note": "The notification was deleted; nobody is told of its events any more.",
}

func (c *Console) notice(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

// ns is the request's namespace, checked to be a name.
func (c *Console) ns(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns := r.PathValue("ns")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		c.renderCode(w, http.StatusBadRequest, "message", page{Title: "Not a namespace", Message: "The address names no namespace: a namespace name is lower-case letters, digits and '-'."})
		return "", false
	}
	return ns, true
}

func (c *Console) switchNamespace(w http.ResponseWriter, r *http.Request) {
	ns := strings.TrimSpace(r.URL.Query().Get("ns"))
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		c.renderCode(w, http.StatusBadRequest, "message", page{Title: "Not a namespace", Namespace: c.namespace,
			Message: "The address names no namespace: a namespace name is lower-case letters, digits and '-'."})
		return
	}
	seeOther(w, r, "/n/"+ns+"/")

}

// appURL is an app's page, with done naming a notice.
func appURL(ns, name, done string) string {
	u := "/n/" + ns + "/apps/" + url.PathEscape(name)
	if done != "" {
		u += "?done=" + done
	}
	return u
}

// getApp reads the app of the request.
func (c *Console) getApp(w http.ResponseWriter, r *http.Request) (*v1alpha1.PrivateApp, bool) {
	ns, ok := c.ns(w, r)
	if !ok {
		return nil, false
	}
	app := &v1alpha1.PrivateApp{}
	if err := c.c.Get(r.Context(), client.ObjectKey{Namespace: ns, Name: r.PathValue("name")}, app); err != nil {
		c.fail(w, r, ns, "read the app", err)
		return nil, false
	}
	return app, true
}

// appRow is one line of the apps lists.
type appRow struct {
	Name, DisplayName, LogoURL, Status, InstalledBy string
	InstalledAt, LastActivity                       time.Time
	CallsToday, RefusedToday, LimitPer10s, Daily    int64
}

func rowOf(a *v1alpha1.PrivateApp, now time.Time) appRow {
	r := appRow{Name: a.Name, DisplayName: a.Spec.DisplayName, LogoURL: a.Spec.LogoURL, Status: string(a.Status.Connection), InstalledBy: a.Status.InstalledBy}
	if r.Status == "" {
		r.Status = "Pending"
	}
	if t := a.Status.InstalledAt; t != nil {
		r.InstalledAt = t.Time
	}
	if t := a.Status.LastActivityTime; t != nil {
		r.LastActivity = t.Time
	}
	used := a.UsageOn(now)
	r.CallsToday, r.RefusedToday = used.Calls, used.Refused
	if u := a.Status.Usage; u != nil {
		r.LimitPer10s, r.Daily = u.LimitPer10s, u.DailyLimit
	}
	return r
}

// attention is one needs-attention line with its fix.
type attention struct {
	App, Reason, Message, Action string
	// Account: the line is about the namespace's account, not an app.
	Account bool
	// Fix is a one-click form (Post) or a link.
	Fix fix
}

type fix struct {
	Label, Post, Link string
	// Field and Value are the form's one field.
	Field, Value string
}

// fixFor is the one-click fix of a reason; apps are the apps by name.
func fixFor(ns string, n insightsv1alpha1.NeedsAttention, apps map[string]*v1alpha1.PrivateApp) fix {
	if n.App == nil {
		return fix{Label: "See usage", Link: "/n/" + ns + "/insights"}
	}
	app := *n.App
	base := appURL(ns, app, "")
	switch n.Reason {
	case insightsv1alpha1.AttentionDisconnected:
		return fix{Label: "Reconnect", Post: base + "/connection", Field: "connected", Value: "true"}
	case insightsv1alpha1.AttentionExpired, insightsv1alpha1.AttentionTokenExpiring:
		return fix{Label: "Rotate token", Link: base + "/rotate"}
	case insightsv1alpha1.AttentionGracePeriodEnds:
		// Only a rotation's grace period can be ended early (a repaired
		// Secret's old token just runs out); the form names the rotation
		// the page showed.
		if a := apps[app]; a != nil && a.Status.Token != nil && a.Status.Token.Previous != nil && a.Status.Token.Previous.Rotation != "" {
			return fix{Label: "Expire old token now", Post: base + "/rotation/expire-now", Field: "rotation", Value: a.Status.Token.Previous.Rotation}
		}
	case insightsv1alpha1.AttentionScopesNotOffered:
		return fix{Label: "Edit scopes", Link: base + "/edit"}
	case insightsv1alpha1.AttentionWaitingForSlot:
		return fix{Label: "See all apps", Link: "/n/" + ns + "/apps"}
	}
	return fix{Label: "Open app", Link: base}
}

func (c *Console) listApps(ctx context.Context, ns string) ([]v1alpha1.PrivateApp, error) {
	var l v1alpha1.PrivateAppList
	if err := c.c.List(ctx, &l, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	slices.SortFunc(l.Items, func(a, b v1alpha1.PrivateApp) int { return cmp.Compare(a.Name, b.Name) })
	return l.Items, nil
}

// nameMatches is the apps' name search: q, in any case, in the name or
// the display name; an empty q matches every app.
func nameMatches(name, displayName, q string) bool {
	return q == "" || strings.Contains(strings.ToLower(name+" "+displayName), strings.ToLower(q))
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	apps, err := c.listApps(r.Context(), ns)
	if err != nil {
		c.fail(w, r, ns, "list the private apps", err)
		return
	}
	now := c.now()
	var data struct {
		Attention []attention
		Apps      []appRow
		// Me is the user's name, when the API server says it; Mine
		// keeps only the apps Me installed.
		Me   string
		Mine bool
		Q    string
	}
	data.Q, data.Mine = strings.TrimSpace(r.URL.Query().Get("q")), r.URL.Query().Get("mine") != ""
	data.Me = c.whoAmI(r.Context())
	keep := func(a *v1alpha1.PrivateApp) bool {
		return nameMatches(a.Name, a.Spec.DisplayName, data.Q) &&
			(!data.Mine || data.Me != "" && a.Status.InstalledBy == data.Me)
	}
	var shown []v1alpha1.PrivateApp
	for i := range apps {
		if keep(&apps[i]) {
			shown = append(shown, apps[i])
		}
	}
	byName := map[string]*v1alpha1.PrivateApp{}
	for i := range shown {
		byName[shown[i].Name] = &shown[i]
	}
	for _, n := range insights.NeedsAttention(shown, now, insights.DefaultAttentionWithin) {
		if n.App == nil && (data.Q != "" || data.Mine) {
			continue // the account's own lines show with every app only
		}
		a := attention{App: "the account", Account: true, Reason: n.Reason, Message: n.Message, Action: n.Action, Fix: fixFor(ns, n, byName)}
		if n.App != nil {
			a.App, a.Account = *n.App, false
		}
		data.Attention = append(data.Attention, a)
	}
	for i := range shown {
		data.Apps = append(data.Apps, rowOf(&shown[i], now))
	}
	c.render(w, r, "home", page{Title: "Connected apps", Namespace: ns, Menu: "home", Notice: c.notice(r),
		Kubectl: "kubectl privateapp -n " + ns, Data: data})
}

func (c *Console) appList(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	apps, err := c.listApps(r.Context(), ns)
	if err != nil {
		c.fail(w, r, ns, "list the private apps", err)
		return
	}
	q, status := strings.TrimSpace(r.URL.Query().Get("q")), r.URL.Query().Get("status")
	now := c.now()
	var data struct {
		Q, Status string
		Statuses  []string
		Apps      []appRow
		Total     int
		CanCreate bool
	}
	data.Q, data.Status, data.Total = q, status, len(apps)
	data.Statuses = []string{"Connected", "Disconnected", "Expired", "Error", "Pending"}
	data.CanCreate = c.access(r.Context(), ns, group, "privateapps", "create", "")
	for i := range apps {
		row := rowOf(&apps[i], now)
		if !nameMatches(row.Name, row.DisplayName, q) {
			continue
		}
		if status != "" && row.Status != status {
			continue
		}
		data.Apps = append(data.Apps, row)
	}
	c.render(w, r, "apps", page{Title: "Private apps", Namespace: ns, Menu: "apps", Notice: c.notice(r),
		Kubectl: "kubectl get privateapps -n " + ns, Data: data})
}

// scopeRoute is a route a scope lets an app call.
type scopeRoute struct{ Catalog, Route, Methods, Path string }

// heldScope is a scope an app holds, and what it lets the app call.
type heldScope struct {
	Name, Description string
	Offered           bool
	Routes            []scopeRoute
}

// appView is the app page.
type appView struct {
	App        *v1alpha1.PrivateApp
	Row        appRow
	Ready      string
	Alerts     []attention
	Token      *v1alpha1.TokenStatus
	Scopes     []heldScope
	CatalogErr string
	Chart      chart
	Activity   []v1alpha1.ActivityEntry
	Records    []recordRow
	RecordsErr string
	Calls      []callRow
	CallsErr   string
	May        map[string]bool
}

func (c *Console) appPage(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	ctx, ns, now := r.Context(), app.Namespace, c.now()
	v := appView{App: app, Row: rowOf(app, now), Token: app.Status.Token}
	if cond := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
		v.Ready = fmt.Sprintf("%s: %s", cond.Reason, cond.Message)
	}
	for _, n := range insights.NeedsAttention([]v1alpha1.PrivateApp{*app}, now, insights.DefaultAttentionWithin) {
		v.Alerts = append(v.Alerts, attention{App: app.Name, Reason: n.Reason, Message: n.Message, Action: n.Action, Fix: fixFor(ns, n, map[string]*v1alpha1.PrivateApp{app.Name: app})})
	}
	catalogs, err := c.catalogs(ctx)
	if err != nil {
		v.CatalogErr = catalogError(err)
	}
	v.Scopes = held(app.Spec.Scopes, catalogs)
	var limit int64
	if app.Status.Usage != nil {
		limit = app.Status.Usage.DailyLimit
	}
	v.Chart = dailyChart(app, now, limit)
	v.Activity = slices.Clone(app.Status.Activity)
	slices.SortFunc(v.Activity, func(a, b v1alpha1.ActivityEntry) int { return b.Time.Compare(a.Time.Time) })
	v.Records, v.RecordsErr = c.records(ctx, ns, app.Name)
	v.Calls, _, v.CallsErr = c.calls(ctx, ns, client.MatchingFields{"app": app.Name, "since": "30d"}, 10, "")
	v.May = map[string]bool{
		"token":  c.access(ctx, ns, "", "secrets", "get", app.TokenSecretName()),
		"rotate": c.access(ctx, ns, group, "tokenrotations", "create", ""),
		"patch":  c.access(ctx, ns, group, "privateapps", "patch", app.Name),
		"grace":  c.access(ctx, ns, group, "tokenrotations", "patch", graceName(app)),
		"delete": c.access(ctx, ns, group, "privateapps", "delete", app.Name),
	}
	c.render(w, r, "app", page{Title: displayName(app), Namespace: ns, Menu: "apps", Notice: c.notice(r),
		Kubectl: fmt.Sprintf("kubectl privateapp -n %s describe %s", ns, app.Name), Data: v})
}

// graceName is the rotation whose grace period keeps the app's old token,
// or "".
func graceName(app *v1alpha1.PrivateApp) string {
	if t := app.Status.Token; t != nil && t.Previous != nil {
		return t.Previous.Rotation
	}
	return ""
}

func displayName(app *v1alpha1.PrivateApp) string {
	if app.Spec.DisplayName != "" {
		return app.Spec.DisplayName
	}
	return app.Name
}

// showToken answers the explicit "Show token" POST: the only answer that
// carries the token, never cached, never in a URL or a title.
func (c *Console) showToken(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	var s corev1.Secret
	if err := c.c.Get(r.Context(), client.ObjectKey{Namespace: app.Namespace, Name: app.TokenSecretName()}, &s); err != nil {
		c.fail(w, r, app.Namespace, "read the app's Secret "+app.TokenSecretName(), err)
		return
	}
	if !app.HoldsTokenOf(&s) {
		c.renderCode(w, http.StatusConflict, "message", page{Title: "Not the app's token", Namespace: app.Namespace, Menu: "apps",
			Message: fmt.Sprintf("The Secret %s is not a token Secret the operator wrote for %s (its type or owner differ), so the console does not show it.",
				app.TokenSecretName(), app.Name),
			Fix: "kubectl describe privateapp " + app.Name + " -n " + app.Namespace + " says what the operator did with the app's Secret."})
		return
	}
	tok := string(s.Data[v1alpha1.SecretTokenKey])
	if tok == "" {
		c.renderCode(w, http.StatusConflict, "message", page{Title: "No token yet", Namespace: app.Namespace, Menu: "apps",
			Message: fmt.Sprintf("The Secret %s holds no token yet: the app is %s.", app.TokenSecretName(), rowOf(app, c.now()).Status),
			Fix:     "The operator issues it once the app is Connected; reload the app's page in a moment."})
		return
	}
	c.render(w, r, "token", page{Title: "Access token", Namespace: app.Namespace, Menu: "apps",
		Kubectl: fmt.Sprintf("kubectl privateapp -n %s token %s", app.Namespace, app.Name),
		Data: struct {
			App   *v1alpha1.PrivateApp
			Token string
		}{app, tok}})
}

func (c *Console) deleteDialog(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	c.render(w, r, "delete", page{Title: "Delete " + app.Name, Namespace: app.Namespace, Menu: "apps",
		Kubectl: fmt.Sprintf("kubectl delete privateapp -n %s %s", app.Namespace, app.Name), Data: struct {
			App   *v1alpha1.PrivateApp
			Error string
		}{App: app}})
}

func (c *Console) deleteApp(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	if typed := r.PostFormValue("confirm"); typed != app.Name {
		c.badInput(w, r, "delete", page{Title: "Delete " + app.Name, Namespace: app.Namespace, Menu: "apps", Data: struct {
			App   *v1alpha1.PrivateApp
			Error string
		}{app, fmt.Sprintf("Type the app's name, %s, exactly to delete it; nothing was deleted.", app.Name)}})
		return
	}
	// Only the app the dialog showed: a newer one of the same name stays.
	uid := types.UID(r.PostFormValue("uid"))
	if uid != app.UID {
		c.renderCode(w, http.StatusConflict, "message", page{Title: "Not deleted", Namespace: app.Namespace, Menu: "apps",
			Message: "The app named " + app.Name + " is not the one this dialog showed (it was deleted and created again); nothing was deleted.",
			Fix:     "Open its page again to see the app there now: " + appURL(app.Namespace, app.Name, "")})
		return
	}
	if err := c.c.Delete(r.Context(), app, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) {
		c.fail(w, r, app.Namespace, "delete the app", err)
		return
	}
	seeOther(w, r, "/n/"+app.Namespace+"/apps?done=deleted")
}

// setConnection disconnects or reconnects an app.
func (c *Console) setConnection(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	var suspend bool
	switch r.PostFormValue("connected") {
	case "true":
	case "false":
		suspend = true
	default:
		c.renderCode(w, http.StatusBadRequest, "message", page{Title: "Nothing changed", Namespace: app.Namespace, Menu: "apps",
			Message: "The form said neither connect nor disconnect; nothing changed."})
		return
	}
	done := "reconnected"
	if suspend {
		done = "suspended"
	}
	p := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"suspend":%t}}`, suspend))
	if err := c.c.Patch(r.Context(), app, p); err != nil {
		c.fail(w, r, app.Namespace, "change the app's connection", err)
		return
	}
	seeOther(w, r, appURL(app.Namespace, app.Name, done))
}

// since is a time for the insights API's since and until fields.
func since(t time.Time) string { return t.UTC().Format(time.RFC3339) }
