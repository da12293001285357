package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

const (
	host = "127.0.0.1:8765"
	// theToken stands for an app's token: it may appear in the show-token
	// answer and nowhere else.
	theToken = "pat-na1-5e3c7a10-test-token-of-the-console-tests"
)

// consoleLog is what newConsole's consoles log.
var consoleLog bytes.Buffer

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// hostile is an app whose every text field tries to inject markup.
func hostile() *v1alpha1.PrivateApp {
	return &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm-sync", UID: "uid-1"},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: `<script>alert("name")</script>`, Description: `<img src=x onerror=alert(1)>"'`,
			LogoURL: "javascript:alert(1)", Scopes: []string{"crm.objects.contacts.read", "crm.gone.write"}},
		Status: v1alpha1.PrivateAppStatus{Connection: v1alpha1.ConnectionConnected, InstalledBy: `<b>alice</b>`,
			InstalledAt: &metav1.Time{Time: now.Add(-48 * time.Hour)},
			Token: &v1alpha1.TokenStatus{Digest: "sha256:0123456789abcdef", IssuedAt: metav1.Time{Time: now.Add(-time.Hour)},
				Previous: &v1alpha1.PreviousTokenStatus{Digest: "sha256:fedcba", ExpiresAt: metav1.Time{Time: now.Add(24 * time.Hour)},
					Reason: "rotated", Rotation: "crm-sync-abcde"}},
			Usage:    &v1alpha1.UsageStatus{LimitPer10s: 100, DailyLimit: 500000, Daily: []v1alpha1.DailyUsage{{Date: "2026-12-06", Calls: 42, Refused: 2}}},
			Activity: []v1alpha1.ActivityEntry{{Type: v1alpha1.ActivityInstalled, Time: metav1.Time{Time: now.Add(-48 * time.Hour)}, User: "alice", Message: `<i>installed</i>`}}},
	}
}

func objects() []client.Object {
	return []client.Object{
		hostile(),
		&v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing"},
			Spec:   v1alpha1.PrivateAppSpec{DisplayName: "Billing", Scopes: []string{"crm.objects.deals.read"}, Suspend: true, SecretName: "builder-sa-token"},
			Status: v1alpha1.PrivateAppStatus{Connection: v1alpha1.ConnectionDisconnected, InstalledBy: "bob"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm-sync-token", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: v1alpha1.GroupVersion.String(), Kind: "PrivateApp", Name: "crm-sync", UID: "uid-1", Controller: ptr.To(true)}}},
			Type: v1alpha1.SecretType, Data: map[string][]byte{v1alpha1.SecretTokenKey: []byte(theToken)}},
		// billing's spec points at a Secret the operator did not write.
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "builder-sa-token"}, Type: corev1.SecretTypeServiceAccountToken,
			Data: map[string][]byte{v1alpha1.SecretTokenKey: []byte("a-service-account-token-never-shown")}},
		&v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm-sync-abcde"},
			Spec: v1alpha1.TokenRotationSpec{AppName: "crm-sync", Strategy: v1alpha1.RotationDelayed}},
		&v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "installs"},
			Spec: v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppInstalled, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins}},
			Status: v1alpha1.AppNotificationStatus{Deliveries: []v1alpha1.Delivery{{ID: "d1", App: "crm-sync", Event: v1alpha1.EventAppInstalled,
				Time: metav1.Time{Time: now.Add(-time.Hour)}, State: v1alpha1.DeliverySent, SentTo: []string{"<b>root</b>@example.com"}}}}},
		&v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: "crm"}, Spec: v1alpha1.APICatalogSpec{
			Scopes: []v1alpha1.CatalogScope{
				{Name: "crm.objects.contacts.read", Area: "CRM / Contacts", Description: "Read contacts"},
				{Name: "crm.objects.contacts.write", Area: "CRM / Contacts", Description: "Change contacts"},
				{Name: "crm.lists.contacts.read", Area: "CRM / Contacts", Description: "Read contact lists"},
				{Name: "crm.objects.deals.read", Area: "CRM / Deals", Description: `<u>deals</u>`}},
			Routes: []v1alpha1.CatalogRoute{{Name: "list-contacts", Methods: []v1alpha1.HTTPMethod{"GET"}, Path: "/crm/v3/objects/contacts",
				Scopes: []string{"crm.objects.contacts.read"}}}}},
	}
}

type fixture struct {
	t      *testing.T
	c      *Console
	client client.WithWatch
	cookie *http.Cookie
}

func newFixture(t *testing.T, access Access, funcs *interceptor.Funcs) *fixture {
	t.Helper()
	b := fake.NewClientBuilder().WithScheme(testScheme()).WithObjects(objects()...).
		WithStatusSubresource(&v1alpha1.PrivateApp{}, &v1alpha1.TokenRotation{})
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	cl := b.Build()
	if access == nil {
		access = func(context.Context, string, string, string, string, string) bool { return true }
	}
	c, err := New(Options{Client: cl, Namespace: "team-a", Hosts: []string{host, "localhost:8765"}, Access: access, Now: func() time.Time { return now },
		WhoAmI: func(context.Context) string { return "bob" }})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, c: c, client: cl}
	rec := f.raw(httptest.NewRequest(http.MethodGet, "http://"+host+c.LoginPath(), nil))
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	for _, ck := range rec.Result().Cookies() {
		if strings.HasPrefix(ck.Name, CookiePrefix) {
			f.cookie = ck
		}
	}
	if f.cookie == nil {
		t.Fatal("login set no session cookie")
	}
	return f
}

func (f *fixture) raw(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.c.ServeHTTP(rec, r)
	return rec
}

// get and post act as the signed-in browser, on the console's own origin.
func (f *fixture) get(path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
	r.AddCookie(f.cookie)
	return f.raw(r)
}

func (f *fixture) post(path string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "http://"+host+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://"+host)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(f.cookie)
	return f.raw(r)
}

// doc parses a page and checks what every page must be: well-formed
// enough to parse, with no script but the console's own file.
func doc(t *testing.T, rec *httptest.ResponseRecorder) *html.Node {
	t.Helper()
	n, err := html.Parse(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	for s := range nodes(n, "script") {
		if src := attr(s, "src"); src != "/static/console.js" {
			t.Errorf("a script other than the console's own: src=%q", src)
		}
		if s.FirstChild != nil {
			t.Errorf("an inline script: %q", s.FirstChild.Data)
		}
	}
	for e := range nodes(n, "") {
		for _, a := range e.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") {
				t.Errorf("an event handler attribute %s=%q on <%s>", a.Key, a.Val, e.Data)
			}
			if (a.Key == "href" || a.Key == "src" || a.Key == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("a javascript: URL in %s of <%s>", a.Key, e.Data)
			}
		}
	}
	return n
}

// nodes yields the elements named tag ("" for all) under n.
func nodes(n *html.Node, tag string) func(func(*html.Node) bool) {
	return func(yield func(*html.Node) bool) {
		var walk func(*html.Node) bool
		walk = func(n *html.Node) bool {
			if n.Type == html.ElementNode && (tag == "" || n.Data == tag) && !yield(n) {
				return false
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if !walk(c) {
					return false
				}
			}
			return true
		}
		walk(n)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// pages are every GET page of the console for the fixture's apps.
var pages = []string{
	"/n/team-a/", "/n/team-a/apps", "/n/team-a/apps?q=crm&status=Connected", "/n/team-a/new-app",
	"/n/team-a/apps/crm-sync", "/n/team-a/apps/billing", "/n/team-a/apps/crm-sync/rotate", "/n/team-a/apps/crm-sync/edit",
	"/n/team-a/apps/crm-sync/logs", "/n/team-a/apps/crm-sync/delete", "/n/team-a/insights", "/n/team-a/insights?type=Installed&user=alice",
	"/n/team-a/notifications", "/n/team-a/notifications?event=AppInstalled", "/n/team-a/new-notification", "/n/team-a/notifications/installs",
}

// TestPages: every page draws, with the headers every answer carries, no
// script of its own, the app's hostile texts as text, and never the token.
func TestPages(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, p := range pages {
		rec := f.get(p)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p, rec.Code, rec.Body)
			continue
		}
		h := rec.Header()
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: Cache-Control %q, X-Frame-Options %q", p, h.Get("Cache-Control"), h.Get("X-Frame-Options"))
		}
		if strings.Contains(rec.Body.String(), theToken) {
			t.Errorf("GET %s shows the token", p)
		}
		n := doc(t, rec)
		for b := range nodes(n, "b") {
			t.Errorf("GET %s: a <b> from the cluster's data became markup: %s", p, text(b))
		}
		for i := range nodes(n, "img") {
			if src := attr(i, "src"); src != "" && !strings.HasPrefix(src, "https://") {
				t.Errorf("GET %s: an image from %q", p, src)
			}
		}
	}
	// The hostile name is shown, as text, on the app's page and the list.
	for _, p := range []string{"/n/team-a/apps/crm-sync", "/n/team-a/"} {
		if n := doc(t, f.get(p)); !strings.Contains(text(n), `<script>alert("name")</script>`) {
			t.Errorf("GET %s: the display name is not shown as text", p)
		}
	}
}

// TestAppPage: what the app page says about the app.
func TestAppPage(t *testing.T) {
	f := newFixture(t, nil, nil)
	body := text(doc(t, f.get("/n/team-a/apps/crm-sync")))
	for _, want := range []string{
		"Connected", "2026-12-04 12:00 UTC by <b>alice</b>", // installed, by whom
		"crm.objects.contacts.read", "GET /crm/v3/objects/contacts", // what a scope lets it call
		"crm.gone.write", "No API catalog offers this scope any more.",
		"Today (UTC): 42 calls, 2 refused", "100 per 10 seconds", // usage against the limits
		"Rotation crm-sync-abcde is in its grace period", "Expire old token now", "Cancel rotation",
		"<i>installed</i>", // activity, as text
		"kubectl privateapp -n team-a describe crm-sync",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the app page does not say %q:\n%s", want, body)
		}
	}
	// The chart has a bar per day with its value in words.
	if !strings.Contains(f.get("/n/team-a/apps/crm-sync").Body.String(), "<title>2026-12-06: 42</title>") {
		t.Error("the chart has no bar for today's 42 calls")
	}
}

// TestSignIn: the console lets in only the browser that used the one-time
// link, on its own host names.
func TestSignIn(t *testing.T) {
	f := newFixture(t, nil, nil)
	// The link worked once (newFixture): it works no more.
	if rec := f.raw(httptest.NewRequest(http.MethodGet, "http://"+host+f.c.LoginPath(), nil)); rec.Code != http.StatusForbidden {
		t.Errorf("the login path after use: %d", rec.Code)
	}
	fresh := newConsole(t)
	secret := strings.TrimPrefix(fresh.LoginPath(), "/login?secret=")
	for _, tc := range []struct {
		name, url string
		cookie    *http.Cookie
		want      int
	}{
		{"no cookie", "http://" + host + "/n/team-a/", nil, http.StatusUnauthorized},
		{"another cookie", "http://" + host + "/n/team-a/", &http.Cookie{Name: fresh.cookie, Value: "guess"}, http.StatusUnauthorized},
		{"a wrong secret", "http://" + host + "/login?secret=" + secret[:len(secret)-1] + "x", nil, http.StatusForbidden},
		{"another host name (DNS rebinding)", "http://rebind.example:8765/login?secret=" + secret, nil, http.StatusMisdirectedRequest},
		{"the session on another host name", "http://rebind.example:8765/n/team-a/", f.cookie, http.StatusMisdirectedRequest},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.url, nil)
		if tc.cookie != nil {
			r.AddCookie(tc.cookie)
		}
		rec := httptest.NewRecorder()
		c := fresh
		if tc.cookie == f.cookie {
			c = f.c
		}
		c.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, rec.Code, tc.want)
		}
		if strings.Contains(rec.Body.String(), "crm-sync") {
			t.Errorf("%s: the answer shows cluster data", tc.name)
		}
	}
	// The wrong secret did not use up the link; the right one signs in
	// with an HttpOnly, SameSite=Strict cookie and leaves the address bar.
	rec := httptest.NewRecorder()
	fresh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost:8765/login?secret="+secret, nil))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("login: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	ck := rec.Result().Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Name != fresh.cookie {
		t.Errorf("the session cookie: %+v", ck)
	}
	// The link presented again is refused, and the terminal is told.
	rec = httptest.NewRecorder()
	fresh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost:8765/login?secret="+secret, nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(consoleLog.String(), "used again") {
		t.Errorf("the link used a second time: %d, log %q", rec.Code, consoleLog.String())
	}
}

func newConsole(t *testing.T) *Console {
	c, err := New(Options{Client: fake.NewClientBuilder().WithScheme(testScheme()).WithObjects(objects()...).Build(),
		Namespace: "team-a", Hosts: []string{host, "localhost:8765"}, Log: log.New(&consoleLog, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCrossOrigin: a POST from another origin changes nothing.
func TestCrossOrigin(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://"+host+"/n/team-a/apps/crm-sync/delete", strings.NewReader("confirm=crm-sync"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		r.AddCookie(f.cookie)
		if rec := f.raw(r); rec.Code != http.StatusForbidden {
			t.Errorf("a POST with %v: %d", hdr, rec.Code)
		}
	}
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "crm-sync"}, &v1alpha1.PrivateApp{}); err != nil {
		t.Errorf("the app is gone after cross-origin POSTs: %v", err)
	}
}

// TestShowToken: the token only in the answer to the explicit POST, not
// cached, not in the title; a GET of the same path does not show it.
func TestShowToken(t *testing.T) {
	f := newFixture(t, nil, nil)
	if rec := f.get("/n/team-a/apps/crm-sync/token"); rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), theToken) {
		t.Errorf("GET of the token path: %d", rec.Code)
	}
	rec := f.post("/n/team-a/apps/crm-sync/token", nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("show token: %d, Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
	}
	n := doc(t, rec)
	var shown string
	for i := range nodes(n, "input") {
		if attr(i, "id") == "token-value" {
			shown = attr(i, "value")
		}
	}
	if shown != theToken {
		t.Error("the show-token answer does not hold the token in its field")
	}
	for ti := range nodes(n, "title") {
		if strings.Contains(text(ti), theToken) {
			t.Error("the token is in the title")
		}
	}
	// A Secret the operator did not write for the app is not shown.
	if rec := f.post("/n/team-a/apps/billing/token", nil); rec.Code != http.StatusConflict || strings.Contains(rec.Body.String(), "a-service-account-token") {
		t.Errorf("show token of an app whose secretName names another Secret: %d", rec.Code)
	}
	// The access check names the Secret: a user who may read only this
	// app's Secret may show it.
	named := newFixture(t, func(_ context.Context, _, _, resource, _, name string) bool {
		return resource != "secrets" || name == "crm-sync-token"
	}, nil)
	for b := range nodes(doc(t, named.get("/n/team-a/apps/crm-sync")), "button") {
		if text(b) == "Show token" && hasAttr(b, "disabled") {
			t.Error("Show token is disabled for a user who may read the app's Secret by name")
		}
	}
	// Without the right to read Secrets the button is disabled.
	deny := newFixture(t, func(_ context.Context, _, _, resource, _, _ string) bool { return resource != "secrets" }, nil)
	for b := range nodes(doc(t, deny.get("/n/team-a/apps/crm-sync")), "button") {
		if text(b) == "Show token" && attr(b, "disabled") == "" && !hasAttr(b, "disabled") {
			t.Error("Show token is enabled for a user who may not read Secrets")
		}
	}
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

// TestCreateApp: the form's validation messages, and an app with the
// scopes picked.
func TestCreateApp(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, tc := range []struct {
		name string
		form url.Values
		says string
	}{
		{"a bad name", url.Values{"name": {"Bad_Name"}, "displayName": {"X"}, "scope": {"crm.objects.contacts.read"}}, "lower-case letters"},
		{"no display name", url.Values{"name": {"x"}, "scope": {"crm.objects.contacts.read"}}, "Give the name people see"},
		{"an http logo", url.Values{"name": {"x"}, "displayName": {"X"}, "logoURL": {"http://example.com/l.png"}, "scope": {"crm.objects.contacts.read"}}, "https:// address"},
		{"no scope", url.Values{"name": {"x"}, "displayName": {"X"}}, "Pick at least one scope"},
		{"a typed non-scope", url.Values{"name": {"x"}, "displayName": {"X"}, "other": {"contacts"}}, "Not a scope: contacts"},
		{"a name taken", url.Values{"name": {"billing"}, "displayName": {"X"}, "scope": {"crm.objects.contacts.read"}}, "exists in team-a already"},
	} {
		rec := f.post("/n/team-a/apps", tc.form)
		if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(text(doc(t, rec)), tc.says) {
			t.Errorf("%s: %d, want 422 saying %q", tc.name, rec.Code, tc.says)
		}
		// What was typed is kept.
		if dn := tc.form.Get("displayName"); dn != "" && !strings.Contains(rec.Body.String(), `value="`+dn+`"`) {
			t.Errorf("%s: the display name typed is not kept", tc.name)
		}
	}
	rec := f.post("/n/team-a/apps", url.Values{"name": {"reports"}, "displayName": {"Reports"}, "description": {"Weekly reports"},
		"logoURL": {"https://example.com/r.png"}, "scope": {"crm.objects.contacts.read", "crm.objects.deals.read"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/n/team-a/apps/reports?done=created" {
		t.Fatalf("create: %d to %q\n%s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	var app v1alpha1.PrivateApp
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "reports"}, &app); err != nil {
		t.Fatal(err)
	}
	if app.Spec.DisplayName != "Reports" || app.Spec.LogoURL != "https://example.com/r.png" || strings.Join(app.Spec.Scopes, ",") != "crm.objects.contacts.read,crm.objects.deals.read" {
		t.Errorf("the app made: %+v", app.Spec)
	}
	if !strings.Contains(text(doc(t, f.get("/n/team-a/apps/reports?done=created"))), "The operator issues its token") {
		t.Error("the app page after create does not explain the token")
	}
	// A link cannot make a page say something of its choosing.
	if strings.Contains(f.get("/n/team-a/apps/reports?done=Your+cluster+is+hacked").Body.String(), "hacked") {
		t.Error("a done= value that is not a notice key is shown")
	}
}

// TestEditKeepsToken: editing changes the spec fields on the form only.
func TestEditKeepsToken(t *testing.T) {
	f := newFixture(t, nil, nil)
	// A form drawn from an older spec is refused, and changes nothing.
	if rec := f.post("/n/team-a/apps/billing/edit", url.Values{"generation": {"41"}, "displayName": {"Stale"}, "scope": {"crm.objects.contacts.write"}}); rec.Code != http.StatusConflict {
		t.Errorf("a save from an older form: %d", rec.Code)
	}
	form := f.hidden("/n/team-a/apps/billing/edit", "")
	form.Set("displayName", "Billing v2")
	form.Set("scope", "crm.objects.contacts.write")
	rec := f.post("/n/team-a/apps/billing/edit", form)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", rec.Code, rec.Body)
	}
	var app v1alpha1.PrivateApp
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing"}, &app); err != nil {
		t.Fatal(err)
	}
	if app.Spec.DisplayName != "Billing v2" || strings.Join(app.Spec.Scopes, ",") != "crm.objects.contacts.write" || !app.Spec.Suspend {
		t.Errorf("after edit: %+v", app.Spec)
	}
}

// TestRotate: rotate now, rotate later with a grace, and the grace period's
// two actions.
func TestRotate(t *testing.T) {
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	if rec := f.post("/n/team-a/apps/crm-sync/rotate", url.Values{"strategy": {"later"}, "grace": {"0"}}); rec.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(rec.Body.String(), "whole number of days from 1 to 90") {
		t.Errorf("a grace of 0 days: %d", rec.Code)
	}
	if rec := f.post("/n/team-a/apps/crm-sync/rotate", url.Values{}); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("no strategy: %d", rec.Code)
	}
	if rec := f.post("/n/team-a/apps/crm-sync/rotate", url.Values{"strategy": {"later"}, "grace": {"3"}}); rec.Code != http.StatusSeeOther ||
		!strings.HasSuffix(rec.Header().Get("Location"), "?done=rotating") {
		t.Fatalf("rotate later: %d %s", rec.Code, rec.Body)
	}
	if rec := f.post("/n/team-a/apps/crm-sync/rotate", url.Values{"strategy": {"now"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("rotate now: %d %s", rec.Code, rec.Body)
	}
	var l v1alpha1.TokenRotationList
	if err := f.client.List(ctx, &l, client.InNamespace("team-a")); err != nil {
		t.Fatal(err)
	}
	var later, immediate int
	for _, r := range l.Items {
		switch {
		case r.Spec.Strategy == v1alpha1.RotationDelayed && r.Spec.GracePeriod != nil && r.Spec.GracePeriod.Duration == 72*time.Hour:
			later++
		case r.Spec.Strategy == v1alpha1.RotationImmediate && r.Spec.AppName == "crm-sync":
			immediate++
		}
	}
	if later != 1 || immediate != 1 {
		t.Errorf("rotations made: %d later with 3 days, %d immediate; %+v", later, immediate, l.Items)
	}
	for action, field := range map[string]func(*v1alpha1.TokenRotation) bool{
		"expire-now": func(r *v1alpha1.TokenRotation) bool { return r.Spec.ExpireOldTokenNow },
		"cancel":     func(r *v1alpha1.TokenRotation) bool { return r.Spec.Cancel },
	} {
		if rec := f.post("/n/team-a/apps/crm-sync/rotation/"+action, url.Values{"rotation": {"crm-sync-older"}}); rec.Code != http.StatusConflict {
			t.Errorf("%s of another rotation than the page showed: %d", action, rec.Code)
		}
		if rec := f.post("/n/team-a/apps/crm-sync/rotation/"+action, f.hidden("/n/team-a/apps/crm-sync", "/rotation/"+action)); rec.Code != http.StatusSeeOther {
			t.Errorf("%s: %d %s", action, rec.Code, rec.Body)
		}
		var r v1alpha1.TokenRotation
		if err := f.client.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "crm-sync-abcde"}, &r); err != nil || !field(&r) {
			t.Errorf("%s did not reach the rotation in its grace period: %+v %v", action, r.Spec, err)
		}
	}
	// An app without a grace period says so.
	if rec := f.post("/n/team-a/apps/billing/rotation/cancel", nil); rec.Code != http.StatusConflict {
		t.Errorf("cancel without a grace period: %d", rec.Code)
	}
}

// TestDelete: the app's name must be typed.
func TestDelete(t *testing.T) {
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	if rec := f.post("/n/team-a/apps/crm-sync/delete", url.Values{"confirm": {"crm-syn"}}); rec.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(rec.Body.String(), "nothing was deleted") {
		t.Errorf("a wrong name: %d", rec.Code)
	}
	if err := f.client.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "crm-sync"}, &v1alpha1.PrivateApp{}); err != nil {
		t.Fatalf("deleted with a wrong name: %v", err)
	}
	if rec := f.post("/n/team-a/apps/crm-sync/delete", url.Values{"confirm": {"crm-sync"}, "uid": {"uid-of-an-earlier-crm-sync"}}); rec.Code != http.StatusConflict {
		t.Errorf("deleting with the uid of another app of the name: %d", rec.Code)
	}
	form := f.hidden("/n/team-a/apps/crm-sync/delete", "/delete")
	form.Set("confirm", "crm-sync")
	if rec := f.post("/n/team-a/apps/crm-sync/delete", form); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if err := f.client.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "crm-sync"}, &v1alpha1.PrivateApp{}); !apierrors.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
}

// TestConnection: disconnect and reconnect from the page.
func TestConnection(t *testing.T) {
	f := newFixture(t, nil, nil)
	if rec := f.post("/n/team-a/apps/billing/connection", url.Values{"connected": {"true"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("reconnect: %d", rec.Code)
	}
	var app v1alpha1.PrivateApp
	_ = f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing"}, &app)
	if app.Spec.Suspend {
		t.Error("reconnect left the app suspended")
	}
	// The home page offers Reconnect for the disconnected app, as a POST.
	g := newFixture(t, nil, nil)
	found := false
	for form := range nodes(doc(t, g.get("/n/team-a/")), "form") {
		if attr(form, "action") == "/n/team-a/apps/billing/connection" && attr(form, "method") == "post" && strings.Contains(text(form), "Reconnect") {
			found = true
		}
	}
	if !found {
		t.Error("home offers no one-click Reconnect for the disconnected app")
	}
}

// TestForbidden: what the API server refuses is shown with the binding to
// ask for.
func TestForbidden(t *testing.T) {
	forbid := &interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*v1alpha1.PrivateAppList); ok {
				return apierrors.NewForbidden(schema.GroupResource{Group: "privateapps.dev", Resource: "privateapps"}, "", io.EOF)
			}
			return c.List(ctx, list, opts...)
		},
	}
	f := newFixture(t, func(context.Context, string, string, string, string, string) bool { return false }, forbid)
	rec := f.get("/n/team-b/")
	body := text(doc(t, rec))
	if rec.Code != http.StatusForbidden || !strings.Contains(body, "--clusterrole=edit") || !strings.Contains(body, "namespace team-b") {
		t.Errorf("a forbidden list: %d\n%s", rec.Code, body)
	}
	// The create button is disabled for a user who may not create.
	g := newFixture(t, func(_ context.Context, _, _, _, verb, _ string) bool { return verb != "create" }, nil)
	if strings.Contains(g.get("/n/team-a/apps").Body.String(), `href="/n/team-a/new-app"`) {
		t.Error("the apps list offers Create to a user who may not create apps")
	}
}

// TestLogsFilters: a filter that is not one of the choices is refused
// with what to change.
func TestLogsFilters(t *testing.T) {
	f := newFixture(t, nil, nil)
	for q, says := range map[string]string{
		"?start=yesterday":                 "the start date is not a date",
		"?response=7xx":                    "the response is not one of the list",
		"?method=TELEPORT":                 "the method is not one of the list",
		"?url=" + strings.Repeat("a", 300): "longer than 256",
		"?method=GET%3Bcurl+evil%7Csh":     "the method is not one of the list",
	} {
		rec := f.get("/n/team-a/apps/crm-sync/logs" + q)
		// The filter fields keep what was typed; no text of the page (the
		// kubectl line included) repeats it.
		if body := text(doc(t, rec)); strings.Contains(body, "curl") || strings.Contains(body, "yesterday") {
			t.Errorf("logs%s: the page repeats what the link said:\n%s", q[:min(len(q), 20)], body)
		}
		if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(text(doc(t, rec)), says) {
			t.Errorf("logs%s: %d, want 422 saying %q", q[:min(len(q), 20)], rec.Code, says)
		}
	}
}

// TestNotificationWizard: the create wizard step by step, each step's
// check, Back, and the notification it makes.
func TestNotificationWizard(t *testing.T) {
	f := newFixture(t, nil, nil)
	// step posts the answers of one step with what the page carried in
	// hidden fields.
	carried := url.Values{}
	step := func(at int, answers url.Values, wantCode int, says string) *html.Node {
		t.Helper()
		form := url.Values{"step": {fmt.Sprint(at)}, "next": {"1"}}
		for k, v := range carried {
			form[k] = v
		}
		for k, v := range answers {
			form[k] = v
		}
		rec := f.post("/n/team-a/new-notification", form)
		if rec.Code != wantCode {
			t.Fatalf("step %d: %d, want %d\n%s", at, rec.Code, wantCode, rec.Body)
		}
		if wantCode == http.StatusSeeOther {
			return nil
		}
		n := doc(t, rec)
		if says != "" && !strings.Contains(text(n), says) {
			t.Fatalf("step %d does not say %q:\n%s", at, says, text(n))
		}
		carried = url.Values{}
		for in := range nodes(n, "input") {
			if attr(in, "type") == "hidden" && attr(in, "name") != "step" {
				carried.Add(attr(in, "name"), attr(in, "value"))
			}
		}
		return n
	}
	step(0, url.Values{"name": {"Bad Name"}}, http.StatusUnprocessableEntity, "lower-case letters")
	step(0, url.Values{"name": {"billing-down"}}, http.StatusOK, "What should people be told about?")
	step(1, url.Values{"event": {"AppInstalled"}, "reminder": {"Daily"}}, http.StatusUnprocessableEntity, "A reminder repeats a disconnection only")
	step(1, url.Values{"event": {"AppDisconnected"}, "reminder": {"Daily"}}, http.StatusOK, "Pick the apps to watch.")
	step(2, nil, http.StatusUnprocessableEntity, "a disconnection notification names its apps")
	step(2, url.Values{"app": {"billing"}}, http.StatusOK, "Who is told?")
	step(3, url.Values{"kind": {"Specific"}}, http.StatusUnprocessableEntity, "Name at least one user or team")
	// Back from the recipients goes to the apps, with billing still picked.
	back := f.post("/n/team-a/new-notification", func() url.Values {
		v := url.Values{"step": {"3"}, "back": {"1"}}
		for k, x := range carried {
			v[k] = x
		}
		return v
	}())
	checked := false
	for in := range nodes(doc(t, back), "input") {
		if attr(in, "name") == "app" && attr(in, "value") == "billing" && hasAttr(in, "checked") {
			checked = true
		}
	}
	if back.Code != http.StatusOK || !checked {
		t.Errorf("Back: %d, billing checked %v", back.Code, checked)
	}
	step(3, url.Values{"kind": {"Specific"}, "users": {"alice bob"}, "teams": {"payments"}}, http.StatusOK, "Review")
	step(4, nil, http.StatusSeeOther, "")
	var n v1alpha1.AppNotification
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing-down"}, &n); err != nil {
		t.Fatal(err)
	}
	if n.Spec.Event != v1alpha1.EventAppDisconnected || n.Spec.Reminder != v1alpha1.ReminderDaily || strings.Join(n.Spec.Apps, ",") != "billing" ||
		n.Spec.Recipients.Kind != v1alpha1.RecipientsSpecific || strings.Join(n.Spec.Recipients.Users, ",") != "alice,bob" ||
		strings.Join(n.Spec.Recipients.Teams, ",") != "payments" {
		t.Errorf("the notification made: %+v", n.Spec)
	}
	// Manage: save a change, then delete.
	save := f.hidden("/n/team-a/notifications/billing-down", "/notifications/billing-down")
	for k, v := range (url.Values{"event": {"AppDisconnected"}, "reminder": {"Weekly"}, "app": {"billing", "crm-sync"}, "kind": {"Everyone"}}) {
		save[k] = v
	}
	if rec := f.post("/n/team-a/notifications/billing-down", save); rec.Code != http.StatusSeeOther {
		t.Fatalf("save: %d\n%s", rec.Code, rec.Body)
	}
	_ = f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing-down"}, &n)
	if n.Spec.Reminder != v1alpha1.ReminderWeekly || len(n.Spec.Apps) != 2 || n.Spec.Recipients.Kind != v1alpha1.RecipientsEveryone || len(n.Spec.Recipients.Users) != 0 {
		t.Errorf("after save: %+v", n.Spec)
	}
	if rec := f.post("/n/team-a/notifications/billing-down/delete", f.hidden("/n/team-a/notifications/billing-down", "/delete")); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", rec.Code)
	}
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing-down"}, &n); !apierrors.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
}

// TestHomeFilters: "my apps" are the apps the user installed, and the
// search narrows both lists.
func TestHomeFilters(t *testing.T) {
	f := newFixture(t, nil, nil)
	for q, want := range map[string][2]bool{ // shows crm-sync, billing
		"":        {true, true},
		"?mine=1": {false, true},
		"?q=crm":  {true, false},
	} {
		n := doc(t, f.get("/n/team-a/"+q))
		links := map[string]bool{}
		for a := range nodes(n, "a") {
			links[attr(a, "href")] = true
		}
		if got := [2]bool{links["/n/team-a/apps/crm-sync"], links["/n/team-a/apps/billing"]}; got != want {
			t.Errorf("home%s links crm-sync, billing: %v, want %v", q, got, want)
		}
	}
	if body := text(doc(t, f.get("/n/team-a/?mine=1"))); !strings.Contains(body, "My apps (1)") || !strings.Contains(body, "Only apps I installed (bob)") {
		t.Errorf("home?mine=1:\n%s", body)
	}
}

// hidden is what the page at path carries in the hidden fields of its
// form whose action ends in action ("" for the page's first form in main).
func (f *fixture) hidden(path, action string) url.Values {
	f.t.Helper()
	rec := f.get(path)
	if rec.Code != http.StatusOK {
		f.t.Fatalf("GET %s: %d", path, rec.Code)
	}
	for form := range nodes(doc(f.t, rec), "form") {
		if attr(form, "method") != "post" || action != "" && !strings.HasSuffix(attr(form, "action"), action) {
			continue
		}
		v := url.Values{}
		for in := range nodes(form, "input") {
			if attr(in, "type") == "hidden" {
				v.Add(attr(in, "name"), attr(in, "value"))
			}
		}
		return v
	}
	f.t.Fatalf("%s has no form posting to …%s", path, action)
	return nil
}

// TestScopePicker: an area with two read scopes offers both, and an edit
// keeps the app's scopes checked, also one no catalog offers.
func TestScopePicker(t *testing.T) {
	f := newFixture(t, nil, nil)
	boxes := func(path string) map[string]bool {
		checked := map[string]bool{}
		for in := range nodes(doc(t, f.get(path)), "input") {
			if attr(in, "name") == "scope" {
				checked[attr(in, "value")] = hasAttr(in, "checked")
			}
		}
		return checked
	}
	if b := boxes("/n/team-a/new-app"); len(b) != 4 {
		t.Errorf("the picker offers %v, want the catalog's 4 scopes", b)
	}
	if b := boxes("/n/team-a/apps/crm-sync/edit"); !b["crm.objects.contacts.read"] || b["crm.lists.contacts.read"] {
		t.Errorf("editing crm-sync checks %v", b)
	}
	for in := range nodes(doc(t, f.get("/n/team-a/apps/crm-sync/edit")), "input") {
		if attr(in, "name") == "other" && attr(in, "value") != "crm.gone.write" {
			t.Errorf("the scope no catalog offers is not kept: %q", attr(in, "value"))
		}
	}
}

// TestAppNamedNew: no app name is taken by a page of the console.
func TestAppNamedNew(t *testing.T) {
	f := newFixture(t, nil, nil)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.client.Create(context.Background(), &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "new"},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: "The new one", Scopes: []string{"crm.objects.contacts.read"}}}))
	if body := text(doc(t, f.get("/n/team-a/apps/new"))); !strings.Contains(body, "The new one") {
		t.Errorf("the page of the app named new:\n%s", body)
	}
}
